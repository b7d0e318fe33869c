"""What the Open NSynth Super device reads: .bin pad files and its settings.json."""

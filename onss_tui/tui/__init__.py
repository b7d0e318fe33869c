"""The Textual front end: a viewer and launcher over the run directory; it never owns a job."""

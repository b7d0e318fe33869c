"""The generation engine: the NSynth decoder (onss_tui.model) run one sample at a time, fast.

    fastgen      PackedDecoder (the weights laid out for one-sample steps), Generation (sampling
                 with ring buffers, saved and resumed bit-exactly), the batch and memory sizing
    layerstep    how a step runs, chosen once: PyTorch ops, the fused kernels, or persistent
    graphgen     DeviceGeneration: the step counter on the device, chunks replayed as CUDA graphs
    kernels      the fused Triton kernels of a step (66 launches a step)
    persistent   many steps in one cooperative launch, for batches up to 64
    bf16cpu      bfloat16 arithmetic emulated in float32 on a CPU
    fidelity     the distance of a precision's generator to fp32 (KL per step, top-1)
    auto         what ``auto`` picks: the precision and the layer step, measured on the device

``onss_tui.model`` holds what the paper describes; everything here is how it is run.
"""

"""AdamW8bit (bitsandbytes): 8-bit optimizer states, CUDA only.

bitsandbytes' 8-bit states need CUDA kernels; on CPU it either fails to import or fails on the
first step, so lrfind refuses it before training starts (needs_cuda). Not offered in a study
(no lr rule): trials run on whatever machine the study runs on, often a CPU.
"""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary

ENTRY = OptimizerEntry(
    name="AdamW8bit",
    class_path="bitsandbytes.optim:AdamW8bit",
    state_slots=1,  # two 8-bit states: about one fp32 tensor's bytes
    summary=lr_summary("AdamW8bit"),
    needs_cuda=True,
)

"""Pretraining with Ray Train + DeepSpeed on the mixture.

    loop.py        the worker loop and its launch (run_pretraining); Publisher: when a step
                   publishes a checkpoint and when it saves a recovery checkpoint
    engine.py      DeepSpeed config and optimizer, lr schedule, one step, the memory estimate
    recovery.py    recovery checkpoints: save, load (without unpickling code), clean up
    throughput.py  tokens/s, FLOPs per token, the device's peak and MFU
"""

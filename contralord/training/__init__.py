"""What both stages train with: the epoch loop, checkpoints, the runtime (device, DDP, progress), precision, the
sampling of batches and steps, and the metrics logger interface.
"""

"""Training: the loop, batch sampler, N2V masking, schedules and resource monitor."""

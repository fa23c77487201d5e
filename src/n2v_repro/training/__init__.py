"""Training: the loop over the backend interface, the seeded numpy batch sampler, N2V masking,
learning-rate schedules and the resource monitor."""

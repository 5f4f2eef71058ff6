"""Push a published allocation into the schedulers a lab runs (Slurm, Kueue); read usage back."""

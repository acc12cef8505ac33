"""Slurm batch templates for ``dtb job slurm`` (installed as ``dtb.job_templates``)."""

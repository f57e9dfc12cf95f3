"""Runners host the stages: :mod:`~pipeline.runner.local` in one process, the reference every other
runner matches, and :mod:`~pipeline.runner.ray_data` on a Ray cluster. They move items between
stages and hold no OCR logic; everything Ray-specific lives in the Ray runner."""

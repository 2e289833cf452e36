"""The request pipeline: one module a stage, composed in order by `compose`."""

from faregate.pipeline.base import Next, Stage, compose

__all__ = ["Next", "Stage", "compose"]

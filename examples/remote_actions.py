"""Actions for remote_executor.py: the executor process imports this module."""

from typing import Any

from dynflow import Action


class Resize(Action):
    def run(self, event: Any = None) -> None:
        self.output["size"] = f"{self.input['width']}x{self.input['height']}"


class Thumbnails(Action):
    def plan(self, image: str) -> None:
        with self.concurrence():
            for width, height in ((64, 64), (256, 256), (1024, 768)):
                self.plan_action(Resize, image=image, width=width, height=height)

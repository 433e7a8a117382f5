"""Looking: whether a head pose points into a cone around the camera (or the screen beside it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..faces.pose import HeadPose

__all__ = ["LookingConfig", "is_looking"]


@dataclass(frozen=True, slots=True)
class LookingConfig:
    """The cone of head poses that count as looking at the screen.

    A face looks when ``|yaw - yaw_offset| <= max_yaw`` and ``|pitch - pitch_offset| <= max_pitch``
    (degrees, signs of :mod:`facesdk.faces.pose`). The offsets are the pose of a person looking at
    the screen's centre, seen from the camera: a camera mounted above the screen sees such a person
    looking down (``pitch_offset < 0``, e.g. -15); one mounted on the screen's right (as the viewer
    sees it) sees them turned to their right (``yaw_offset < 0``).

    Attributes:
        max_yaw: Half-width of the cone sideways (default 30).
        max_pitch: Half-height of the cone (default 20).
        yaw_offset: Yaw of a person looking at the screen's centre.
        pitch_offset: Pitch of a person looking at the screen's centre.
    """

    max_yaw: float = 30.0
    max_pitch: float = 20.0
    yaw_offset: float = 0.0
    pitch_offset: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 < self.max_yaw <= 90.0 and 0.0 < self.max_pitch <= 90.0):
            raise ConfigError(
                f"LookingConfig: max_yaw and max_pitch are half-angles in (0, 90] degrees, got "
                f"{self.max_yaw} and {self.max_pitch}; the defaults are 30 and 20"
            )
        if abs(self.yaw_offset) > 90.0 or abs(self.pitch_offset) > 90.0:
            raise ConfigError(
                f"LookingConfig: offsets are angles within +-90 degrees, got yaw_offset={self.yaw_offset}, "
                f"pitch_offset={self.pitch_offset}"
            )


def is_looking(pose: HeadPose | None, config: LookingConfig = LookingConfig()) -> bool:  # noqa: B008 - frozen
    """Whether ``pose`` points into ``config``'s cone; ``False`` without a pose."""
    if pose is None:
        return False
    return (
        abs(pose.yaw - config.yaw_offset) <= config.max_yaw
        and abs(pose.pitch - config.pitch_offset) <= config.max_pitch
    )

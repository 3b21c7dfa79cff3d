"""The pipes between actors. Knows nothing of GEPA."""

from synth_opt.lanes.channels import Channel, LaneStats, open_channel, start_worker_pool
from synth_opt.lanes.presets import LanePlan, lane_plan

__all__ = ["Channel", "LanePlan", "LaneStats", "lane_plan", "open_channel", "start_worker_pool"]

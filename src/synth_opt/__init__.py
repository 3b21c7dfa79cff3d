"""synth_opt: GEPA prompt optimization as an asyncio actor pipeline."""

//! Provider kling against the simulator over real HTTP (being written).

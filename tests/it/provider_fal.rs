//! Provider fal against the simulator over real HTTP (being written).

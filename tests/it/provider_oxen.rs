//! Provider oxen against the simulator over real HTTP (being written).

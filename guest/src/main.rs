//! isol-guest-init: PID 1 inside the microVM.
fn main() {}

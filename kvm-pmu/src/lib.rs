//! kvm-pmu (in progress)

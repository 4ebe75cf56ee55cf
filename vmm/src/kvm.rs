//! /dev/kvm: opening it, checking the API version and the capabilities the VMM relies on,
//! and creating the VM with its in-kernel irqchip, PIT and TSS.

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::boot::layout::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};

/// Capabilities the VMM needs.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// Errors of KVM setup.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// open(/dev/kvm) failed.
    #[error("Cannot open /dev/kvm: load kvm_intel/kvm_amd, and check you may read and write /dev/kvm (root or the kvm group)")]
    Open(#[source] kvm_ioctls::Error),
    /// Wrong API version.
    #[error("KVM API version {0} is not the stable version 12")]
    ApiVersion(i32),
    /// A capability is missing.
    #[error("KVM lacks {0}, which isol's VMM needs")]
    MissingCap(&'static str),
    /// KVM_CREATE_VM failed.
    #[error("Cannot create a KVM VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// KVM_SET_TSS_ADDR failed.
    #[error("Cannot set the KVM TSS address")]
    SetTss(#[source] kvm_ioctls::Error),
    /// KVM_SET_IDENTITY_MAP_ADDR failed.
    #[error("Cannot set the KVM identity map address")]
    SetIdentityMap(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_IRQCHIP failed.
    #[error("Cannot create the in-kernel interrupt controller")]
    CreateIrqchip(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_PIT2 failed.
    #[error("Cannot create the in-kernel PIT")]
    CreatePit(#[source] kvm_ioctls::Error),
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("Cannot read KVM's supported CPUID")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
}

/// Opens /dev/kvm and checks it is usable.
pub fn open() -> Result<Kvm, KvmError> {
    let kvm = Kvm::new().map_err(KvmError::Open)?;
    let v = kvm.get_api_version();
    if v != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(KvmError::ApiVersion(v));
    }
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(*cap) {
            return Err(KvmError::MissingCap(name));
        }
    }
    Ok(kvm)
}

/// Creates the VM: TSS and identity map in the MMIO hole, in-kernel PIC/IOAPIC/LAPIC, PIT.
pub fn create_vm(kvm: &Kvm) -> Result<VmFd, KvmError> {
    let vm = kvm.create_vm().map_err(KvmError::CreateVm)?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
        .map_err(KvmError::SetIdentityMap)?;
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(KvmError::SetTss)?;
    vm.create_irq_chip().map_err(KvmError::CreateIrqchip)?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(KvmError::CreatePit)?;
    Ok(vm)
}

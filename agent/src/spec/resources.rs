//! CRI `LinuxContainerResources` → OCI `LinuxResources`, for CreateContainer and for
//! UpdateContainerResources. A zero CRI field means "not specified" and stays `None`
//! (for an update: unchanged).

use std::collections::HashMap;

use berth_proto::cri::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::host::HostFacts;
use super::invalid;

/// The resources as OCI values, validated (errors name `resources.<field>`). Swap and
/// hugepage limits are left out when the host lacks their controller (containerd
/// does the same); a memory limit without a swap limit also caps swap at the same
/// value so the container cannot swap (containerd's default). `oom_score_adj` is a
/// process setting, not part of the result.
pub fn resources(
    r: &LinuxContainerResources,
    host: &HostFacts,
) -> runtimes::Result<LinuxResources> {
    let cpu = cpu(r)?;
    let memory = memory(r, host)?;
    let hugepages = hugepages(r)?;
    let unified = unified(r)?;
    let mut out = LinuxResources::default();
    out.set_devices(None);
    out.set_cpu((cpu != LinuxCpu::default()).then_some(cpu));
    out.set_memory((memory != LinuxMemory::default()).then_some(memory));
    out.set_hugepage_limits(
        (host.hugetlb_controller && !hugepages.is_empty()).then_some(hugepages),
    );
    out.set_unified((!unified.is_empty()).then_some(unified));
    Ok(out)
}

/// CPU period, quota, shares and cpusets.
fn cpu(r: &LinuxContainerResources) -> runtimes::Result<LinuxCpu> {
    let mut cpu = LinuxCpu::default();
    if r.cpu_period < 0 {
        return Err(negative("cpu_period", r.cpu_period));
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if r.cpu_quota < -1 {
        return Err(invalid(
            "resources.cpu_quota",
            format!("{} is neither -1 (no limit) nor positive", r.cpu_quota),
        ));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_shares < 0 {
        return Err(negative("cpu_shares", r.cpu_shares));
    }
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(cpu_list("resources.cpuset_cpus", &r.cpuset_cpus)?));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(cpu_list("resources.cpuset_mems", &r.cpuset_mems)?));
    }
    Ok(cpu)
}

/// The memory limit and memory+swap limit (swap only where the host has the controller).
fn memory(r: &LinuxContainerResources, host: &HostFacts) -> runtimes::Result<LinuxMemory> {
    let mut memory = LinuxMemory::default();
    let limit = r.memory_limit_in_bytes;
    if limit < 0 {
        return Err(negative("memory_limit_in_bytes", limit));
    }
    if limit > 0 {
        memory.set_limit(Some(limit));
    }
    let swap = r.memory_swap_limit_in_bytes;
    if swap < -1 {
        return Err(invalid(
            "resources.memory_swap_limit_in_bytes",
            format!("{swap} is neither -1 (no limit) nor positive"),
        ));
    }
    if swap > 0 && limit > 0 && swap < limit {
        return Err(invalid(
            "resources.memory_swap_limit_in_bytes",
            format!("{swap} is below memory_limit_in_bytes {limit} (it counts memory plus swap)"),
        ));
    }
    if host.swap_controller {
        if swap != 0 {
            memory.set_swap(Some(swap));
        } else if limit > 0 {
            memory.set_swap(Some(limit));
        }
    }
    Ok(memory)
}

/// Hugepage limits, each for a valid page size.
fn hugepages(r: &LinuxContainerResources) -> runtimes::Result<Vec<LinuxHugepageLimit>> {
    let mut hugepages = Vec::new();
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let field = format!("resources.hugepage_limits[{i}]");
        page_size(&format!("{field}.page_size"), &h.page_size)?;
        let limit = i64::try_from(h.limit).map_err(|_| {
            invalid(
                &format!("{field}.limit"),
                format!("{} is too large", h.limit),
            )
        })?;
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(h.page_size.clone());
        l.set_limit(limit);
        hugepages.push(l);
    }
    Ok(hugepages)
}

/// cgroup v2 files to write as they are.
fn unified(r: &LinuxContainerResources) -> runtimes::Result<HashMap<String, String>> {
    let mut unified = HashMap::new();
    for (key, value) in &r.unified {
        // The key names a file in the container's cgroup directory.
        let bad_key =
            key.is_empty() || key.contains('/') || key.starts_with('.') || !key.contains('.');
        if bad_key || value.contains('\0') {
            return Err(invalid(
                "resources.unified",
                format!("{key:?} is not a cgroup v2 file name (like memory.high) or its value is invalid"),
            ));
        }
        unified.insert(key.clone(), value.clone());
    }
    Ok(unified)
}

fn negative(field: &str, value: i64) -> runtimes::Error {
    invalid(
        &format!("resources.{field}"),
        format!("must not be negative, got {value}"),
    )
}

/// A cpuset list: `0-3,5,7-8`.
fn cpu_list(field: &str, list: &str) -> runtimes::Result<String> {
    let ok = list.split(',').all(|part| {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        match (lo.parse::<u32>(), hi.parse::<u32>()) {
            (Ok(lo), Ok(hi)) => lo <= hi,
            _ => false,
        }
    });
    if !ok {
        return Err(invalid(
            field,
            format!("{list:?} is not a list of numbers and ranges like 0-3,5"),
        ));
    }
    Ok(list.to_string())
}

/// A hugepage size as the kernel names its cgroup files: `<n><unit>B` with unit
/// K, M, G, T (2MB, 1GB, 64KB).
fn page_size(field: &str, size: &str) -> runtimes::Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    let ok = digits.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB");
    if !ok {
        return Err(invalid(
            field,
            format!("{size:?} is not a page size like 2MB or 1GB"),
        ));
    }
    Ok(())
}

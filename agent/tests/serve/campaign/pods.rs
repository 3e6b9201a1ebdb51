//! Random pod and container configs: a valid one (from the [`World`]) with a few
//! fields replaced by edge cases. What could reach beyond the test if berth accepted
//! it stays inside it: host ports are invalid or free ones, host paths of mounts are
//! junk or under the test's directory, cgroup parents are empty or climb (and must be
//! refused), sysctls that would escape `/proc/sys` aim at a harmless file.

use berth_proto::cri::v1::*;

use super::values::Rng;
use crate::world::World;

/// A pod config: valid for `name` with 0 to 3 fields replaced.
pub fn pod(rng: &mut Rng, world: &World, name: &str, ids: &[String]) -> PodSandboxConfig {
    let mut c = world.pod(name, &[]);
    for _ in 0..rng.below(4) {
        mutate_pod(rng, world, &mut c, ids);
    }
    c
}

fn mutate_pod(rng: &mut Rng, world: &World, c: &mut PodSandboxConfig, ids: &[String]) {
    let meta = c.metadata.get_or_insert_with(Default::default);
    let linux = c.linux.get_or_insert_with(Default::default);
    match rng.below(16) {
        0 => meta.name = rng.text(ids),
        1 => meta.namespace = rng.text(ids),
        2 => meta.uid = rng.text(ids),
        3 => meta.attempt = rng.next() as u32,
        4 => c.hostname = rng.text(ids),
        5 => {
            c.log_directory = match rng.below(3) {
                0 => rng.text(ids),
                1 => format!("{}/{}", world.log_dir("x").display(), rng.text(ids)),
                _ => String::new(),
            }
        }
        6 => c.labels = rng.map(ids),
        7 => c.annotations = rng.map(ids),
        8 => {
            c.dns_config = Some(DnsConfig {
                servers: rng.texts(ids),
                searches: rng.texts(ids),
                options: rng.texts(ids),
            })
        }
        9 => {
            let host_port = match rng.below(3) {
                0 => 0,
                1 => i32::from(berth_testkit::servers::free_port()),
                _ => *rng.pick(&[-1, 65536, i32::MIN, i32::MAX]),
            };
            c.port_mappings.push(PortMapping {
                protocol: rng.int().rem_euclid(5),
                container_port: rng.int(),
                host_port,
                host_ip: rng.text(ids),
            })
        }
        10 => {
            linux.cgroup_parent = rng
                .pick(&["", "/berth-e2e/../../tmp", "..", "a/../../..", "/x\0y"])
                .to_string()
        }
        11 => {
            let key = rng
                .pick(&[
                    "net.ipv4.ip_forward",
                    "net/ipv4/conf/all/forwarding",
                    "kernel.shm_rmid_forced",
                    "kernel.hostname",
                    "vm.swappiness",
                    "net/../../../../tmp/berth-campaign-sysctl",
                    "net.ipv4..x",
                    "",
                ])
                .to_string();
            linux.sysctls.insert(key, rng.text(ids));
        }
        12 => {
            let sc = linux.security_context.get_or_insert_with(Default::default);
            let ns = sc.namespace_options.get_or_insert_with(Default::default);
            match rng.below(3) {
                0 => ns.network = rng.int().rem_euclid(6),
                1 => ns.pid = rng.int().rem_euclid(6),
                _ => ns.ipc = rng.int().rem_euclid(6),
            }
        }
        13 => {
            let sc = linux.security_context.get_or_insert_with(Default::default);
            sc.privileged = rng.chance(50);
            sc.run_as_user = Some(Int64Value {
                value: rng.number(),
            });
            sc.supplemental_groups = vec![rng.number()];
        }
        14 => c.windows = Some(WindowsPodSandboxConfig::default()),
        _ => c.metadata = None,
    }
}

/// A container config: valid for `name` (busybox sleeping) with 0 to 3 fields
/// replaced.
pub fn container(rng: &mut Rng, world: &World, name: &str, ids: &[String]) -> ContainerConfig {
    let mut c = world.container(name, &["sleep", "3600"]);
    for _ in 0..rng.below(4) {
        mutate_container(rng, world, &mut c, ids);
    }
    c
}

fn mutate_container(rng: &mut Rng, world: &World, c: &mut ContainerConfig, ids: &[String]) {
    let linux = c.linux.get_or_insert_with(Default::default);
    match rng.below(18) {
        0 => c.metadata.get_or_insert_with(Default::default).name = rng.text(ids),
        1 => c.metadata.get_or_insert_with(Default::default).attempt = rng.next() as u32,
        2 => c.image.get_or_insert_with(Default::default).image = rng.text(ids),
        3 => c.command = rng.texts(ids),
        4 => c.args = rng.texts(ids),
        5 => c.working_dir = rng.text(ids),
        6 => c.envs.push(KeyValue {
            key: rng.text(ids),
            value: rng.text(ids).into_bytes(),
        }),
        7 => {
            let host_path = match rng.below(3) {
                0 => rng.text(ids),
                1 => world.dir().join("logs").display().to_string(),
                _ => format!("{}/{}", world.dir().display(), rng.text(ids)),
            };
            c.mounts.push(Mount {
                container_path: rng.text(ids),
                host_path,
                readonly: rng.chance(50),
                propagation: rng.int().rem_euclid(4),
                ..Default::default()
            })
        }
        8 => c.devices.push(Device {
            container_path: rng.text(ids),
            host_path: rng
                .pick(&["/dev/null", "dev/null", "/dev/../dev/null", "", "/\0"])
                .to_string(),
            permissions: rng.text(ids),
        }),
        9 => c.labels = rng.map(ids),
        10 => c.annotations = rng.map(ids),
        11 => c.log_path = rng.text(ids),
        12 => {
            let r = linux.resources.get_or_insert_with(Default::default);
            match rng.below(6) {
                0 => r.cpu_period = rng.number(),
                1 => r.cpu_quota = rng.number(),
                2 => r.cpu_shares = rng.number(),
                3 => r.memory_limit_in_bytes = rng.number(),
                4 => r.oom_score_adj = rng.number(),
                _ => r.cpuset_cpus = rng.text(ids),
            }
        }
        13 => {
            let sc = linux.security_context.get_or_insert_with(Default::default);
            match rng.below(5) {
                0 => {
                    sc.run_as_user = Some(Int64Value {
                        value: rng.number(),
                    })
                }
                1 => {
                    sc.run_as_group = Some(Int64Value {
                        value: rng.number(),
                    })
                }
                2 => sc.run_as_username = rng.text(ids),
                3 => sc.supplemental_groups = vec![rng.number(), rng.number()],
                _ => sc.privileged = rng.chance(50),
            }
        }
        14 => {
            let sc = linux.security_context.get_or_insert_with(Default::default);
            sc.capabilities = Some(Capability {
                add_capabilities: rng.texts(ids),
                drop_capabilities: rng.texts(ids),
                add_ambient_capabilities: rng.texts(ids),
            });
        }
        15 => {
            let sc = linux.security_context.get_or_insert_with(Default::default);
            let profile = SecurityProfile {
                profile_type: rng.int().rem_euclid(4),
                localhost_ref: rng.text(ids),
            };
            if rng.chance(50) {
                sc.seccomp = Some(profile);
            } else {
                sc.apparmor = Some(profile);
            }
        }
        16 => {
            c.stdin = rng.chance(50);
            c.tty = rng.chance(50);
            c.stdin_once = rng.chance(50);
        }
        _ => c.metadata = None,
    }
}

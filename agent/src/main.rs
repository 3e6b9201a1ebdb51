//! `berth`: serves CRI v1 on a unix socket.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("berth serve is not built yet")
}

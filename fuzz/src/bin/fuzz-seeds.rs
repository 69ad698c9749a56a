//! Writes every fuzz target's seeds into `DIR/TARGET/seed-N`: the starting corpus of a campaign.

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuzz-seeds DIR (writes DIR/TARGET/seed-N for every target)");
        std::process::exit(2);
    };
    for target in swarmlabel_fuzz::Target::ALL {
        let dir = std::path::Path::new(&dir).join(target.name());
        std::fs::create_dir_all(&dir)?;
        let seeds = swarmlabel_fuzz::seeds(*target);
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed)?;
        }
        println!("{}: {} seeds", target.name(), seeds.len());
    }
    Ok(())
}

//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use libp2p::Multiaddr;

/// swarmlabel: label data for machine learning together, peer to peer.
///
/// Data owners turn a folder of images, a CSV or a JSONL file into a signed, content-addressed
/// dataset; volunteers fetch samples, label the ones the model is least sure of, and share labels
/// and models with every peer.
///
/// Start with `swarmlabel init`, then `swarmlabel dataset create PATH --name NAME --labels a,b,c`.
#[derive(Debug, Parser)]
#[command(
    name = "swarmlabel",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit status: 0 success, 1 damage found (dataset verify), 2 error."
)]
pub(crate) struct Cli {
    /// The node's home directory (key, config, stored datasets).
    /// Default: the platform data directory, e.g. ~/.local/share/swarmlabel.
    #[arg(long, global = true, env = "SWARMLABEL_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,

    /// Print only what scripts need (ids, errors); no progress bars.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,

    /// Log format on stderr (set the level with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the node's key (its identity) and config in the home.
    ///
    /// The key is the node's libp2p identity and signs its datasets and labels. It is written
    /// with mode 0600. An existing key is never replaced without --force (then it is kept as
    /// key.replaced-N).
    Init {
        /// Replace an existing key (the node's peer id changes).
        #[arg(long)]
        force: bool,
    },
    /// Print the node's peer id and public key.
    Id {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, list, check, fetch and export datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Run the node: serve this home's datasets, fetch joined ones, answer the CLI.
    ///
    /// Prints the node's listen addresses (with /p2p/ID: give one to other nodes as --bootstrap)
    /// and stops cleanly on Ctrl-C or SIGTERM. Listen and bootstrap addresses default to the
    /// home's config.toml.
    ///
    /// Example: swarmlabel run --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW... --join ID
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Run a whole labeling network on this machine, with nothing to set up or download.
    ///
    /// Draws a dataset of shapes, starts a bootstrap peer, a data owner's node, a few simulated
    /// volunteers (labelling at a human-like pace) and your own node, all on 127.0.0.1, and
    /// prints your labeling page's address. Your labels mix with the volunteers'; the accuracy
    /// of the network's merged model on held-out images climbs as labels come in. Ctrl-C stops
    /// everything. Everything lives in a temporary folder (or --dir) that is removed at the end.
    ///
    /// Example: swarmlabel demo
    ///          swarmlabel demo --headless --labels 200     (no human: your node answers too)
    #[command(verbatim_doc_comment)]
    Demo(DemoArgs),
    /// Show the running node's page address, peers, datasets and joins.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the labeling page's address (with this run's token), or open it in the browser.
    ///
    /// The address stays the same from run to run (see `swarmlabel run --api`); the token in it
    /// changes, so open the page through this command after a restart.
    Page {
        /// Open it with the desktop's browser (xdg-open).
        #[arg(long)]
        open: bool,
    },
    /// List the running node's connected peers.
    Peers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a label for a sample through the running node (signed with this node's key,
    /// acknowledged once it is durable), or, with --tui, label a text or table dataset in the
    /// terminal with the labeling page's keys.
    ///
    /// Example: swarmlabel label ID SAMPLE cat      (or --skip, or --unsure instead of a label)
    ///          swarmlabel label ID --tui           (1-9 then a-z: labels; Space skip; / unsure;
    ///                                               Backspace undo; Left/Right; \ model; Esc quit)
    #[command(verbatim_doc_comment)]
    Label {
        /// The dataset id.
        id: String,
        /// The sample id (as `dataset export` lists them).
        #[arg(required_unless_present = "tui")]
        sample: Option<String>,
        /// A label from the dataset's label set.
        #[arg(required_unless_present_any = ["skip", "unsure", "tui"], conflicts_with_all = ["skip", "unsure"])]
        label: Option<String>,
        /// Label in the terminal: the queue of the running node, sample after sample.
        #[arg(long, conflicts_with_all = ["sample", "label", "skip", "unsure", "json"])]
        tui: bool,
        /// Skip the sample (no label).
        #[arg(long, conflicts_with = "unsure")]
        skip: bool,
        /// Mark the sample as unsure.
        #[arg(long)]
        unsure: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a dataset's labels from everyone, as the running node holds them; with --stats,
    /// what they add up to.
    ///
    /// --stats prints counts (samples labelled, annotations, votes, skips, unsure, annotators,
    /// ignored annotations by reason), agreement between annotators (Krippendorff's alpha, and
    /// Fleiss' kappa when every sample has the same number of votes; each says why when it is not
    /// defined) and the annotators ranked by reliability: Dawid-Skene's estimate of the chance
    /// that their answer is right, anchored by the dataset's gold labels where it has them.
    /// Skip and unsure are not votes.
    ///
    /// Examples: swarmlabel labels ID
    ///           swarmlabel labels ID --stats
    ///           swarmlabel labels ID --stats --json --method majority
    #[command(verbatim_doc_comment)]
    Labels {
        /// The dataset id or a unique prefix.
        id: String,
        /// Show counts, agreement and annotators instead of the labels.
        #[arg(long)]
        stats: bool,
        /// How consensus labels are chosen for the counts of --stats (see `swarmlabel export`).
        #[arg(long, value_enum, default_value_t = ConsensusMethod::DawidSkene, requires = "stats")]
        method: ConsensusMethod,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a dataset's consensus labels (or, with --raw, every signed annotation) as CSV or
    /// JSONL, or its labelled images as an image folder, from the running node.
    ///
    /// Consensus: one row per annotated sample: sample_id, file_name (in the home that imported
    /// an image dataset: the original file, relative to the imported folder), label (empty when
    /// there is no consensus: only skips/unsure, or a majority tie), confidence, votes, skips,
    /// unsure.
    ///
    /// --format imagefolder --out DIR: DIR/LABEL/FILE for every image with a consensus label,
    /// and DIR/metadata.jsonl (file_name, label, confidence, votes, sample_id, original_file):
    /// Hugging Face `datasets.load_dataset("imagefolder", data_dir=DIR)` loads it as is. DIR must
    /// not exist; it appears whole or not at all.
    /// With the default method, dawid-skene, each annotator's votes are weighted by how reliable
    /// they proved (on gold labels where the dataset has them, and against each other), and the
    /// confidence is the probability of the label. With --method majority the label needs
    /// strictly the most votes, and the confidence is its share of the votes. While no sample has
    /// two annotators' votes and none has a gold label (one volunteer so far), Dawid-Skene cannot
    /// tell skill from truth: majority vote is used, and a note says so.
    ///
    /// --raw: one row per signed annotation: sample_id, annotator (public key), time_ms, kind
    /// (label, skip or unsure), label, suggestion, suggestion_confidence, signature (hex). Anyone
    /// can check each signature against the annotator's key.
    ///
    /// Examples: swarmlabel export ID --format csv --out labels.csv
    ///           swarmlabel export ID --format jsonl --raw > annotations.jsonl
    ///           swarmlabel export ID --format imagefolder --out ./labelled
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Ask the running node to fetch a dataset and then serve it (in the background; see
    /// `swarmlabel status`).
    Join {
        /// The dataset id (64 hex characters).
        id: String,
    },
    /// Remove stored blobs that no listed dataset references, and leftovers of interrupted imports.
    Gc {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script of a shell.
    ///
    /// Examples: swarmlabel completions bash > /etc/bash_completion.d/swarmlabel
    ///           swarmlabel completions zsh > "${fpath[1]}/_swarmlabel"
    ///           swarmlabel completions fish > ~/.config/fish/completions/swarmlabel.fish
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages: swarmlabel.1 and one per subcommand (swarmlabel-dataset-create.1...).
    ///
    /// Example: swarmlabel man --out /usr/local/share/man/man1 && man swarmlabel
    #[command(verbatim_doc_comment)]
    Man {
        /// The folder to write them into (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DatasetCommand {
    /// Import a folder of images, a CSV file or a JSONL file as a signed dataset.
    ///
    /// Every sample is stored under the BLAKE3 hash of its bytes; the manifest is signed with
    /// this node's key, and its hash is the dataset id. Nothing is listed until the whole
    /// dataset is durable, so an interrupted import leaves nothing behind but blobs that
    /// `swarmlabel gc` removes.
    ///
    /// Images: PNG/JPEG files under PATH, recursively; images in a sub-folder named like a label
    /// get that label as a gold label (PATH/cat/1.png is a cat).
    /// CSV: a header row, numeric feature columns, and optionally a label column.
    /// JSONL: one object per line with a text field and optionally a label field.
    ///
    /// Example: swarmlabel dataset create ./photos --name pets --labels cat,dog,other
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List the datasets stored in this home.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The owner's view of the labelling: progress per class, coverage against the redundancy
    /// target, the model's learning curve, and annotators by reliability with what the
    /// screening flags (random, fixed on one label, drifting), for you to decide on.
    ///
    /// Needs the running node. Example: swarmlabel dataset status 3f2a
    Status {
        /// The dataset id or a unique prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a dataset's manifest (ID may be a unique prefix of at least 4 characters).
    Show {
        /// The dataset id or a unique prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every stored sample and check the manifest signature.
    ///
    /// Names every missing or corrupt sample; exits with code 1 if there is any.
    Verify {
        /// The dataset id or a unique prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a dataset from this home: one you created, or one you joined and want to leave.
    ///
    /// Deletes its listing, its labels (yours too: those not yet synced to a peer are lost), its
    /// model registry, policy and private gold, then every sample no other dataset uses. Stop the
    /// node first (it holds the home). Without --yes it only says what would go.
    ///
    /// Example: swarmlabel dataset rm 3fa9 --yes
    #[command(verbatim_doc_comment)]
    Rm {
        /// The dataset id or a unique prefix.
        id: String,
        /// Really remove it.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a dataset's samples and gold labels as CSV or JSONL.
    Export {
        /// The dataset id or a unique prefix.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Write to FILE instead of standard output (written atomically).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Fetch a dataset through the running node and wait until it is stored and verified.
    Fetch {
        /// The dataset id (64 hex characters).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the datasets the running node has heard of on the network (by name, description,
    /// label or id prefix).
    Search {
        /// Text to look for (all datasets when omitted).
        text: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ban annotators of a dataset you own: their labels stop counting on every node.
    ///
    /// The ban is part of the dataset's policy, signed with this node's key (it must be the key
    /// that created the dataset) and sent to every peer; nodes drop the banned keys' labels from
    /// consensus, statistics, exports and the merged model, past labels included. Needs the
    /// running node. Find keys with `swarmlabel labels ID --json` (field "annotator").
    ///
    /// Example: swarmlabel dataset ban 3f2a 9c41…e0 --reason "answers at random"
    Ban {
        /// The dataset id or a unique prefix.
        id: String,
        /// Annotator keys to ban (64 hex digits each).
        #[arg(required = true)]
        keys: Vec<String>,
        /// Why, in a few words (shown to peers; at most 128 bytes).
        #[arg(long, default_value = "")]
        reason: String,
        /// Lift the ban of these keys instead.
        #[arg(long)]
        lift: bool,
    },
    /// Admit only known annotators to a dataset you own (an allowlist), or take keys off it.
    ///
    /// The first `admit` turns the dataset from open (anyone not banned) into an allowlist: from
    /// then on only admitted keys' labels count. `swarmlabel dataset policy ID --open` opens it
    /// again. Needs the running node.
    Admit {
        /// The dataset id or a unique prefix.
        id: String,
        /// Annotator keys (64 hex digits each).
        #[arg(required = true)]
        keys: Vec<String>,
        /// Take these keys off the allowlist instead.
        #[arg(long)]
        remove: bool,
    },
    /// Show a dataset's policy (who may label it), or open it to anyone not banned.
    Policy {
        /// The dataset id or a unique prefix.
        id: String,
        /// Drop the allowlist: anyone not banned may label.
        #[arg(long)]
        open: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a dataset folder to try swarmlabel with.
    ///
    /// `shapes` draws images of circles, squares, triangles and crosses with random colours,
    /// sizes, positions and noise, in one sub-folder per class (import them with
    /// --labels circle,square,triangle,cross).
    Generate {
        /// What to generate.
        #[arg(value_enum)]
        kind: GenerateKind,
        /// How many images.
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// The folder to create (must be new or empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Seed: the same seed gives the same images.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The dataset id or a unique prefix.
    pub(crate) id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LabelsFormat::Csv)]
    pub(crate) format: LabelsFormat,
    /// Write every signed annotation instead of the consensus labels.
    #[arg(long)]
    pub(crate) raw: bool,
    /// How consensus labels are chosen.
    #[arg(long, value_enum, default_value_t = ConsensusMethod::DawidSkene, conflicts_with = "raw")]
    pub(crate) method: ConsensusMethod,
    /// Write to FILE instead of standard output (complete or not at all: written to a temporary
    /// file that is renamed when done).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// How a consensus label is chosen.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ConsensusMethod {
    /// Dawid-Skene: votes weighted by each annotator's estimated reliability.
    DawidSkene,
    /// Majority vote: strictly the most votes; a tie gives no label.
    Majority,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Simulated volunteer nodes besides yours.
    #[arg(long, default_value_t = 3)]
    pub(crate) volunteers: usize,
    /// Images in the dataset.
    #[arg(long, default_value_t = 400)]
    pub(crate) samples: usize,
    /// A simulated volunteer labels one sample every this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    pub(crate) pace_ms: u64,
    /// No human: your node answers too, the demo stops after --labels labels and prints the
    /// learning progress.
    #[arg(long)]
    pub(crate) headless: bool,
    /// With --headless: labels across the network before the demo stops.
    #[arg(long, default_value_t = 200, requires = "headless")]
    pub(crate) labels: u64,
    /// Keep the demo's homes and images in this new folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Where your node's API and labeling page listen (loopback only; default: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub(crate) api: SocketAddr,
    /// Seed of the drawn images.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Addresses to listen on (repeat for several; default: the config's).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<Multiaddr>,
    /// Bootstrap peers to dial, with /p2p/ID (repeat for several; default: the config's).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Datasets of this home to serve (every listed dataset is served; this checks they exist).
    #[arg(long, value_name = "ID")]
    pub(crate) serve: Vec<String>,
    /// Datasets to fetch from the network and then serve. Until a provider is found (none
    /// online yet, or none reachable) the node keeps looking, 1 s to 30 s apart, and keeps what
    /// it fetched; `swarmlabel status` shows the state.
    #[arg(long, value_name = "ID")]
    pub(crate) join: Vec<String>,
    /// Public addresses at which peers reach this node (repeat for several).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) external: Vec<Multiaddr>,
    /// Treat the listen addresses as reachable by peers (a LAN, loopback, a public host).
    #[arg(long)]
    pub(crate) listen_addrs_reachable: bool,
    /// Never reserve a slot on the bootstrap peers' relays. By default a node that peers cannot
    /// dial (behind a NAT) reserves one, so that they reach it through the relay and then
    /// directly (it dials them back, or hole punching makes the path).
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// Count private addresses (10.x, 192.168.x, ...) as routable when checking whether peers
    /// can dial this node: for networks made of private ranges (a lab, a test bed).
    #[arg(long)]
    pub(crate) private_addrs_routable: bool,
    /// Do not look for peers on the LAN. By default a node that listens beyond loopback finds
    /// nodes on its LAN by multicast DNS and connects to them at their LAN addresses, with no
    /// bootstrap peer needed.
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Where the local API and the labeling page listen (loopback only). Default: where this
    /// home's node listened last, else 127.0.0.1:7734, so the page keeps its address (and the
    /// answers the browser holds for it); when that is taken, a free port, with a warning.
    #[arg(long, value_name = "ADDR")]
    pub(crate) api: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The folder or file to import.
    pub(crate) path: PathBuf,
    /// The dataset's name.
    #[arg(long)]
    pub(crate) name: String,
    /// The label set, comma separated (e.g. cat,dog,other). For a folder of images whose
    /// sub-folders name the classes (photos/cat/1.png), it defaults to those folders' names.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub(crate) labels: Vec<String>,
    /// The source format (auto: a folder is images, .csv is CSV, .jsonl/.ndjson is JSONL).
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub(crate) format: Format,
    /// The CSV column or JSONL field with gold labels (default: `label` when there is one).
    #[arg(long, value_name = "COL")]
    pub(crate) label_column: Option<String>,
    /// The JSONL field with the text.
    #[arg(long, value_name = "FIELD", default_value = "text")]
    pub(crate) text_field: String,
    /// Free text describing the dataset.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// A markdown file of labeling instructions (at most 64 KiB), signed into the manifest and
    /// shown to every labeler on the page and in the terminal labeler. Rendered as text: no
    /// HTML, scripts, images or remote content.
    #[arg(long, value_name = "FILE")]
    pub(crate) instructions: Option<PathBuf>,
    /// Fail on files that are not images instead of skipping them with a warning.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Labels wanted per sample (1 to 16): volunteers' nodes spread samples so that each gets
    /// this many different labelers, and disagreements are settled by majority vote. 3 is a
    /// good choice when labels are hard or volunteers careless; it triples the labels needed.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) redundancy: u32,
    /// Keep the gold labels out of the published manifest: peers get the samples without the
    /// answers, and only this home keeps them (in datasets/ID.gold; back it up). Gold checks then
    /// measure labelers who cannot see the answers, so a Sybil cannot earn reliability by copying
    /// them. This home's consensus, stats, training and exports still use them.
    #[arg(long)]
    pub(crate) private_gold: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Auto,
    Images,
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    Csv,
    Jsonl,
}

/// Formats of `swarmlabel export` (labels).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LabelsFormat {
    Csv,
    Jsonl,
    /// Images: each under its consensus label's folder, with metadata.jsonl (needs --out DIR):
    /// what Hugging Face `datasets` loads as "imagefolder".
    Imagefolder,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum GenerateKind {
    Shapes,
}

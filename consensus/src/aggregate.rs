//! Turning many, possibly disagreeing annotations into better labels. Plain functions over a
//! [`Votes`] table: no I/O, deterministic.
//!
//! - [`majority`]: per-sample majority vote with ties reported, never silently broken.
//! - [`dawid_skene()`]: the Dawid–Skene EM model: per-annotator confusion matrices and class
//!   priors, with gold labels (when the dataset has them) held fixed to anchor annotator skill.
//!   Gives a consensus label with a posterior confidence per sample and a reliability per
//!   annotator.
//! - [`krippendorff_alpha`] (any number of raters per sample) and [`fleiss_kappa`] (a fixed number
//!   of raters per sample): chance-corrected inter-annotator agreement.
//! - [`screen()`]: annotators whose answers look random, fixed on one label or drifting, each
//!   flagged by an exact test with its evidence, for a person to decide on.
//!
//! Skip and unsure answers are not votes: [`Votes::from_annotations`] leaves them out.

mod agreement;
mod dawid_skene;
mod majority;
mod screen;
mod votes;

pub use agreement::{AgreementError, fleiss_kappa, krippendorff_alpha};
pub use dawid_skene::{Config, Fit, dawid_skene};
pub use majority::{Outcome, TieBreak, majority};
pub use screen::{Answer, Answers, Flag, ScreenConfig, Screening, screen};
pub use votes::{Vote, VoteError, Votes};

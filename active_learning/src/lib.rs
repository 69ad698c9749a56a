#![doc = include_str!("../README.md")]

pub mod features;
pub mod labels;
pub mod matrix;
pub mod model;
pub mod pool;
pub mod strategy;

pub use features::{Colour, Extractor, FeatureError, ImageFeatures, Tabular, TextFeatures};
pub use labels::{LabelSet, UnknownLabel};
pub use matrix::{Matrix, MatrixError};
pub use model::{
    Architecture, Augment, Input, Model, ModelError, ModelSpec, TrainConfig, TrainReport,
};
pub use pool::{ScoreConfig, ScoredPool, score};
pub use strategy::{
    ColdStart, Diversity, Pick, Pool, Query, Reason, SelectError, Strategy, select,
};

//! `swarmlabel label ID --tui`: labeling a text or table dataset in the terminal, with the
//! labeling page's keys. The key handling and state are in [`session`] (free of I/O, tested
//! there); this file reads keys, draws, and carries the session's effects to the node's API.

mod session;

use anyhow::{Context as _, bail};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::client::Client;
use session::{Answer, Content, Effect, Item, Key, Session};

/// Samples asked for at a time.
const BATCH: usize = 8;

pub(crate) fn run(client: &Client, id: &str) -> anyhow::Result<()> {
    let datasets: Vec<serde_json::Value> = client.get("/api/v1/datasets")?;
    let Some(dataset) = datasets.iter().find(|d| d["id"] == id) else {
        bail!("dataset {id} is not in this node's home; join it first");
    };
    if dataset["kind"] == "images" {
        bail!(
            "the terminal shows text and table datasets only; label the images of {id} on the labeling page (`swarmlabel run` prints its URL)"
        );
    }
    let labels: Vec<String> = serde_json::from_value(dataset["labels"].clone())
        .context("the node sent an unexpected dataset")?;
    let name = dataset["name"].as_str().unwrap_or_default().to_owned();
    // The owner's description and instructions, shown above the sample as written (markdown
    // reads well as text; nothing in it is interpreted).
    let brief = [&dataset["description"], &dataset["instructions"]]
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|t| !t.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut session = Session::new(labels);
    fetch(client, id, &mut session)?;

    let mut terminal = ratatui::try_init().context(
        "cannot take over the terminal (is this an interactive terminal?); label on the labeling page instead",
    )?;
    let result = event_loop(&mut terminal, client, id, &name, &brief, &mut session);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    id: &str,
    name: &str,
    brief: &str,
    session: &mut Session,
) -> anyhow::Result<()> {
    let mut answered = 0usize;
    loop {
        terminal.draw(|f| draw(f, session, name, brief, answered))?;
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Esc,
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Backspace => Key::Backspace,
            KeyCode::Left => Key::Left,
            KeyCode::Right => Key::Right,
            KeyCode::Esc => Key::Esc,
            _ => continue,
        };
        let effects = session.on_key(key);
        // The next sample first, then the node.
        terminal.draw(|f| draw(f, session, name, brief, answered))?;
        for effect in effects {
            let done = match effect {
                Effect::Quit => return Ok(()),
                Effect::Send {
                    sample,
                    answer,
                    suggestion,
                } => {
                    let mut body = serde_json::json!({ "sample": sample });
                    match answer {
                        Answer::Label(l) => body["label"] = l.into(),
                        Answer::Skip => body["skip"] = true.into(),
                        Answer::Unsure => body["unsure"] = true.into(),
                    }
                    if let Some((label, probability)) = suggestion {
                        body["suggestion"] =
                            serde_json::json!({ "label": label, "probability": probability });
                    }
                    answered += 1;
                    client
                        .post::<serde_json::Value>(&format!("/api/v1/datasets/{id}/labels"), body)
                        .map(drop)
                }
                Effect::Undo => client
                    .post::<serde_json::Value>(
                        &format!("/api/v1/datasets/{id}/undo"),
                        serde_json::json!({}),
                    )
                    .map(|_| answered = answered.saturating_sub(1)),
                Effect::More => fetch(client, id, session),
            };
            if let Err(e) = done {
                session.message = format!("{e:#}");
            }
        }
    }
}

/// Asks the node for the next samples and their content.
fn fetch(client: &Client, id: &str, session: &mut Session) -> anyhow::Result<()> {
    let exclude = session.held().join(",");
    let picks: Vec<serde_json::Value> = client.get(&format!(
        "/api/v1/datasets/{id}/queue?n={BATCH}&exclude={exclude}"
    ))?;
    let mut items = Vec::new();
    for pick in picks {
        let sample = pick["sample"].as_str().unwrap_or_default().to_owned();
        let path = format!("/api/v1/datasets/{id}/samples/{sample}");
        let content = if pick["media"] == "row" {
            let row: serde_json::Value = client.get(&path)?;
            let columns: Vec<String> = serde_json::from_value(row["columns"].clone())?;
            let values: Vec<f64> = serde_json::from_value(row["values"].clone())?;
            Content::Row(columns.into_iter().zip(values).collect())
        } else {
            Content::Text(client.get_text(&path)?)
        };
        let guesses = pick["guesses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                (
                    g["label"].as_str().unwrap_or_default().to_owned(),
                    g["probability"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        items.push(Item {
            sample,
            content,
            why: pick["why"].as_str().unwrap_or_default().to_owned(),
            guesses,
            answer: pick["mine"].as_str().map(str::to_owned),
        });
    }
    session.receive(items);
    Ok(())
}

/// Lines of the instructions pane at most (it scrolls no further: the page shows them whole).
const BRIEF_LINES: u16 = 8;

fn draw(frame: &mut Frame<'_>, session: &Session, name: &str, brief: &str, answered: usize) {
    let why_height = if session.show_why { 4 } else { 0 };
    let brief_height = if brief.is_empty() {
        0
    } else {
        u16::try_from(brief.lines().count())
            .unwrap_or(u16::MAX)
            .min(BRIEF_LINES)
            + 2
    };
    let [header, instructions, body, keys, why, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(brief_height),
        Constraint::Min(5),
        Constraint::Length(3),
        Constraint::Length(why_height),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Line::from(format!(
            "swarmlabel · {name} · {answered} answered here · Esc quits"
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        header,
    );
    if !brief.is_empty() {
        frame.render_widget(
            Paragraph::new(brief)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" instructions ")),
            instructions,
        );
    }
    let item = session.current();
    let title = match item.and_then(|i| i.answer.as_deref()) {
        Some(a) => format!(" sample (your answer: {a}) "),
        None => " sample ".into(),
    };
    let text = match item.map(|i| &i.content) {
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Row(row)) => row
            .chunks(4)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|(k, v)| format!("{k:>14} {v:<10}"))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => "nothing to label here for now".into(),
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        body,
    );
    let mut spans: Vec<Span<'_>> = Vec::new();
    for (i, label) in session.labels.iter().enumerate() {
        if let Some(k) = session::label_key(i) {
            let chosen = item.and_then(|i| i.answer.as_deref()) == Some(label.as_str());
            let style = if chosen {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            spans.push(Span::styled(format!("[{k}] {label}  "), style));
        }
    }
    spans.push(Span::raw(
        "[Space] skip  [/] unsure  [Backspace] undo  [←/→] previous/next  [\\] model's view",
    ));
    frame.render_widget(
        Paragraph::new(Line::from(spans))
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" keys ")),
        keys,
    );
    if let Some(item) = item.filter(|_| session.show_why) {
        let guesses = if item.guesses.is_empty() {
            "the model has no guess yet".to_owned()
        } else {
            item.guesses
                .iter()
                .map(|(l, p)| format!("{l} {:.0}%", p * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        frame.render_widget(
            Paragraph::new(format!("why: {}\nguesses: {guesses}", item.why))
                .block(Block::bordered().title(" model's view ")),
            why,
        );
    }
    frame.render_widget(Line::from(session.message.as_str()), status);
}

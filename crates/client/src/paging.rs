//! `--limit`, `--cursor` and `--all` for every list command.

use serde_json::{Value, json};

use crate::api::Page;
use crate::error::CliError;

/// Which part of a list to show.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Paging {
    /// Items per page (the server's default when omitted)
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start after an earlier page (its `next_cursor`)
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow `next_cursor` to the end and show every item
    #[arg(long)]
    pub all: bool,
}

impl Paging {
    /// One page, or with `--all` every page merged into one `{items, next_cursor: null}`.
    pub(crate) async fn fetch(
        &self,
        mut fetch_page: impl AsyncFnMut(&Page) -> Result<Value, CliError>,
    ) -> Result<Value, CliError> {
        let mut page = Page {
            limit: self.limit,
            cursor: self.cursor.clone(),
        };
        let first = fetch_page(&page).await?;
        if !self.all {
            return Ok(first);
        }
        let mut items = Vec::new();
        let mut current = first;
        loop {
            if let Some(page_items) = current["items"].as_array_mut() {
                items.append(page_items);
            }
            let next = current["next_cursor"].as_str().map(str::to_owned);
            match next {
                Some(cursor) if page.cursor.as_deref() == Some(&*cursor) => {
                    return Err(CliError::UnexpectedResponse(format!(
                        "the server returned cursor {cursor} twice"
                    )));
                }
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
            current = fetch_page(&page).await?;
        }
        Ok(json!({ "items": items, "next_cursor": null }))
    }
}

//! `/queue`: an operator's customer-success queue (their own, or another
//! owner's with `?owner=`): each item with its client, playbook, reason, due
//! date (overdue said in words and in the status colour), status or step,
//! score and the factors that made it (in a `<details>`, so a person sees why
//! it comes first); counts over the whole queue; filters by template and step
//! as a GET form; per item "Start" (or "Open" once started) and "Snooze";
//! pages by cursor; and the person's open to-dos beside it, with complete and
//! skip. Everything reads and acts through the API's own handlers
//! (`routes::playbooks`, `routes::desk`).
//!
//! The to-do forms (`/todos/{id}`) are shared with the playbook step page.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::Json as JsonOut;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Date, OffsetDateTime};
use waymark_domain::journey::JourneyTemplate;
use waymark_store::Todo;

use super::artifacts::Badge;
use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, Viewer, local_path, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query as ApiQuery};
use crate::observe::TraceId;
use crate::routes::desk::{self, TodoQuery};
use crate::routes::playbooks::{self as api, QueueItemView, QueueQuery};

/// Items on the dashboard's "My queue".
pub const DASHBOARD_ITEMS: u32 = 5;

// --- shared pieces ---------------------------------------------------------------

/// The playbook templates by name (every journey template, with the pack's
/// and the API's), for titles and step names.
pub async fn templates(state: &AppState) -> Result<BTreeMap<String, JourneyTemplate>, PageError> {
    Ok(
        waymark_engine::catalog::journey_templates(&state.packs, &*state.store)
            .await?
            .into_iter()
            .map(|(t, _)| (t.name.clone(), t))
            .collect(),
    )
}

/// A step's name in a template, or the id as words.
pub fn step_name(
    templates: &BTreeMap<String, JourneyTemplate>,
    template: &str,
    step: &str,
) -> String {
    templates
        .get(template)
        .and_then(|t| t.stages.iter().find(|s| s.id == step))
        .map_or_else(|| super::tone::words(step), |s| s.name.clone())
}

/// A due date in words against today: `due today`, `due in 12 days
/// (2027-03-13)`, `overdue: due 2027-02-20, 9 days ago`.
pub fn due_words(due: Date, today: Date) -> String {
    let days = (due - today).whole_days();
    match days {
        d if d < -1 => format!("overdue: due {due}, {} days ago", -d),
        -1 => format!("overdue: due {due}, yesterday"),
        0 => format!("due today ({due})"),
        1 => format!("due tomorrow ({due})"),
        d => format!("due in {d} days ({due})"),
    }
}

/// A number as people read it: thousands separated, at most two decimals.
pub fn figure(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    let whole = rounded.trunc();
    let mut digits = format!("{}", whole.abs() as u64);
    let mut grouped = String::new();
    while digits.len() > 3 {
        let rest = digits.split_off(digits.len() - 3);
        grouped = format!(",{rest}{grouped}");
    }
    grouped = format!("{digits}{grouped}");
    let frac = (rounded - whole).abs();
    let mut out = if frac > 0.0 {
        let f = format!("{frac:.2}");
        format!(
            "{grouped}{}",
            f.trim_start_matches('0').trim_end_matches('0')
        )
    } else {
        grouped
    };
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The value of a `datetime-local` input (`2027-03-04T09:00`, read as UTC)
/// as the API's RFC 3339 time; other text is passed on as it is, for the API
/// to refuse at its field.
pub fn until_of(input: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let t = input.trim();
    if t.is_empty() {
        return None;
    }
    if OffsetDateTime::parse(t, &Rfc3339).is_ok() {
        return Some(t.to_owned());
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(t, minutes)
        .or_else(|_| time::PrimitiveDateTime::parse(t, seconds));
    Some(match local {
        Ok(l) => l
            .assume_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| t.to_owned()),
        Err(_) => t.to_owned(),
    })
}

/// A `datetime-local` value: tomorrow at 09:00 (UTC) from `now`.
pub fn tomorrow_morning(now: OffsetDateTime) -> String {
    format!("{}T09:00", now.date() + time::Duration::days(1))
}

/// `path` with `?done=` (or `&done=`) added: the notice the page shows.
pub fn with_done(path: &str, done: &str) -> String {
    let (path, fragment) = match path.split_once('#') {
        Some((p, f)) => (p, format!("#{f}")),
        None => (path, String::new()),
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}done={done}{fragment}")
}

/// A redirect (303) to a path on this site; to the start page when the path
/// could not be a `Location` (a path from a form that is not plain ASCII).
pub fn redirect(path: &str) -> Response {
    if axum::http::HeaderValue::from_str(path).is_ok() {
        Redirect::to(path).into_response()
    } else {
        Redirect::to("/").into_response()
    }
}

/// One factor of a score, as its table row.
pub struct FactorRow {
    pub name: String,
    pub value: String,
    pub weight: String,
    pub contribution: String,
    pub explanation: String,
}

/// A queue item as listed.
pub struct ItemRow {
    pub v: QueueItemView,
    pub template_title: String,
    pub status: Badge,
    /// The step it is on, once started.
    pub step: Option<String>,
    /// Where its playbook is worked, once started.
    pub open_href: Option<String>,
    pub due: String,
    pub score: String,
    pub factors: Vec<FactorRow>,
}

impl ItemRow {
    pub fn new(
        v: QueueItemView,
        templates: &BTreeMap<String, JourneyTemplate>,
        today: Date,
    ) -> Self {
        let i = &v.item;
        let template = templates.get(&i.template);
        let is_step = |s: &str| template.is_some_and(|t| t.stages.iter().any(|x| x.id == s));
        let open_href = i.journey_id.map(|j| match i.stage.as_deref() {
            Some(s) if is_step(s) => format!("/journeys/{j}/steps/{s}"),
            _ => format!("/journeys/{j}"),
        });
        ItemRow {
            template_title: template.map_or_else(|| i.template.clone(), |t| t.title.clone()),
            status: Badge::of(i.status.as_str()),
            step: i
                .stage
                .as_deref()
                .filter(|s| is_step(s))
                .map(|s| step_name(templates, &i.template, s)),
            open_href,
            due: due_words(i.due, today),
            score: format!("{:.1}", i.score),
            factors: i
                .factors
                .iter()
                .map(|f| FactorRow {
                    name: match f.input.as_str() {
                        "arr" => "ARR".into(),
                        other => super::tone::words(other),
                    },
                    value: f.value.map_or_else(|| "not recorded".into(), figure),
                    weight: figure(f.weight),
                    contribution: format!("{:.2}", f.contribution),
                    explanation: f.explanation.clone(),
                })
                .collect(),
            v,
        }
    }
}

/// A to-do as listed, with its due date in words.
pub struct TodoRow {
    pub t: Todo,
    pub due: Option<String>,
    pub overdue: bool,
    pub priority: Badge,
    pub status: Badge,
    /// The playbook step it belongs to, if any.
    pub href: Option<String>,
}

impl TodoRow {
    pub fn new(t: Todo, today: Date) -> Self {
        let open = t.status == waymark_store::TodoStatus::Open;
        TodoRow {
            due: t.due_date.map(|d| due_words(d, today)),
            overdue: open && t.due_date.is_some_and(|d| d < today),
            priority: Badge {
                tone: super::tone::tone(t.priority.as_str()),
                words: format!("{} priority", t.priority.as_str()),
            },
            status: Badge::of(t.status.as_str()),
            href: t.journey_id.map(|j| match &t.step {
                Some(s) => format!("/journeys/{j}/steps/{s}"),
                None => format!("/journeys/{j}"),
            }),
            t,
        }
    }
}

/// The to-dos of `q` through the desk API; none when the caller has no desk.
pub async fn todos(
    state: &AppState,
    caller: &Caller,
    q: TodoQuery,
) -> Result<Option<(Vec<TodoRow>, usize)>, PageError> {
    let today = state.clock.now().date();
    match desk::list_todos(State(state.clone()), Extension(caller.clone()), ApiQuery(q)).await {
        Ok(JsonOut(page)) => Ok(Some((
            page.items
                .into_iter()
                .map(|e| TodoRow::new(e.todo, today))
                .collect(),
            page.engine_tasks.len(),
        ))),
        Err(ApiError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The caller's preferences, or the defaults when they have none.
pub async fn preferences(
    state: &AppState,
    caller: &Caller,
) -> waymark_domain::preferences::Preferences {
    desk::get_preferences(State(state.clone()), Extension(caller.clone()))
        .await
        .map(|JsonOut(p)| p)
        .unwrap_or_default()
}

// --- the queue page ----------------------------------------------------------------

/// An option of a filter's select.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    layout: Layout,
    heading: String,
    /// The names the owner goes by, as matched on clients.
    owner_names: String,
    /// `?owner=` as given (empty: mine).
    owner: String,
    items: Vec<ItemRow>,
    total: i64,
    overdue: i64,
    by_template: Vec<(String, i64)>,
    by_stage: Vec<(String, i64)>,
    template_choices: Vec<Choice>,
    stage_choices: Vec<Choice>,
    filtered: bool,
    next_href: Option<String>,
    first_href: Option<String>,
    todos: Option<Vec<TodoRow>>,
    engine_tasks: usize,
    snooze_default: String,
    /// Where forms send the person back to.
    here: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// The query of `/queue`.
#[derive(Debug, Default, Deserialize)]
pub struct QueuePageQuery {
    pub owner: Option<String>,
    pub template: Option<String>,
    pub stage: Option<String>,
    pub cursor: Option<String>,
    pub done: Option<String>,
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(kept).unwrap_or_default())
    }
}

async fn build(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    q: &QueuePageQuery,
) -> Result<QueuePage, PageError> {
    caller.require_staff()?;
    let prefs = preferences(state, caller).await;
    // A bare /queue opens on the person's default filter; the form always
    // sends both selects, so "all" stays all.
    let bare = q.template.is_none() && q.stage.is_none() && q.cursor.is_none();
    let template = if bare {
        prefs.default_queue_filter.template.clone()
    } else {
        q.template.clone()
    }
    .filter(|t| !t.is_empty());
    let stage = if bare {
        prefs.default_queue_filter.stage.clone()
    } else {
        q.stage.clone()
    }
    .filter(|s| !s.is_empty());
    let owner = q
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != "me")
        .unwrap_or("")
        .to_owned();
    let JsonOut(answer) = api::get_queue(
        State(state.clone()),
        Extension(caller.clone()),
        Path(if owner.is_empty() {
            "me".into()
        } else {
            owner.clone()
        }),
        ApiQuery(QueueQuery {
            template: template.clone(),
            stage: stage.clone(),
            limit: Some(prefs.queue_page_size.clamp(1, 200)),
            cursor: q.cursor.clone().filter(|c| !c.is_empty()),
        }),
    )
    .await?;
    let templates = templates(state).await?;
    let today = state.clock.now().date();
    let title_of = |name: &str| {
        templates
            .get(name)
            .map_or_else(|| name.to_owned(), |t| t.title.clone())
    };
    let stage_label = |s: &str| {
        if s == "due" {
            "not started".to_owned()
        } else {
            // The first playbook with such a step names it.
            templates
                .values()
                .filter(|t| t.playbook.is_some())
                .find_map(|t| t.stages.iter().find(|x| x.id == s).map(|x| x.name.clone()))
                .unwrap_or_else(|| super::tone::words(s))
        }
    };
    let playbooks: Vec<&JourneyTemplate> = templates
        .values()
        .filter(|t| t.playbook.is_some())
        .collect();
    let template_choices = playbooks
        .iter()
        .map(|t| Choice {
            value: t.name.clone(),
            label: t.title.clone(),
            selected: template.as_deref() == Some(&t.name),
        })
        .collect();
    let mut stage_choices = vec![Choice {
        value: "due".into(),
        label: "Not started".into(),
        selected: stage.as_deref() == Some("due"),
    }];
    for t in &playbooks {
        if template.as_deref().is_some_and(|x| x != t.name) {
            continue;
        }
        for s in &t.stages {
            if stage_choices.iter().any(|c| c.value == s.id) {
                continue;
            }
            stage_choices.push(Choice {
                value: s.id.clone(),
                label: format!("{} ({})", s.name, t.title),
                selected: stage.as_deref() == Some(&s.id),
            });
        }
    }
    let base = [
        ("owner", owner.as_str()),
        ("template", template.as_deref().unwrap_or("")),
        ("stage", stage.as_deref().unwrap_or("")),
    ];
    let next_href = answer.next_cursor.as_deref().map(|c| {
        let mut p = base.to_vec();
        p.push(("cursor", c));
        format!("/queue{}", query_string(&p))
    });
    let first_href = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|_| format!("/queue{}", query_string(&base)));
    let here = format!(
        "/queue{}",
        query_string(&[
            ("owner", owner.as_str()),
            ("template", template.as_deref().unwrap_or("")),
            ("stage", stage.as_deref().unwrap_or("")),
            ("cursor", q.cursor.as_deref().unwrap_or("")),
        ])
    );
    let (todos, engine_tasks) = if owner.is_empty() {
        match todos(
            state,
            caller,
            TodoQuery {
                assigned_to: None,
                status: Some("open".into()),
                journey_id: None,
                client_id: None,
                limit: Some(20),
                cursor: None,
            },
        )
        .await?
        {
            Some((rows, engine)) => (Some(rows), engine),
            None => (None, 0),
        }
    } else {
        (None, 0)
    };
    Ok(QueuePage {
        layout: Layout::new(state, "Queue", Some(caller), csrf, "queue").await?,
        heading: if owner.is_empty() {
            "My queue".into()
        } else {
            format!("Queue of {owner}")
        },
        owner_names: answer
            .owner
            .iter()
            .filter(|o| !(o.starts_with("usr_") || o.starts_with("tok_")))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        owner,
        total: answer.stats.total,
        overdue: answer.stats.overdue,
        by_template: answer
            .stats
            .by_template
            .iter()
            .map(|(k, v)| (title_of(k), *v))
            .collect(),
        by_stage: answer
            .stats
            .by_stage
            .iter()
            .map(|(k, v)| (stage_label(k), *v))
            .collect(),
        items: answer
            .items
            .into_iter()
            .map(|v| ItemRow::new(v, &templates, today))
            .collect(),
        template_choices,
        stage_choices,
        filtered: template.is_some() || stage.is_some(),
        next_href,
        first_href,
        todos,
        engine_tasks,
        snooze_default: tomorrow_morning(state.clock.now()),
        here,
        notice: None,
        error: None,
    })
}

/// `GET /queue`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<QueuePageQuery>,
) -> Result<Response, PageError> {
    let mut page = build(&state, &caller, &csrf, &q).await?;
    page.notice = super::notice_of(q.done.as_deref());
    render(&page)
}

/// The queue again with a refusal.
async fn refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    back: &str,
    e: ApiError,
) -> Result<Response, PageError> {
    if matches!(
        e,
        ApiError::NotFound(_) | ApiError::Internal(_) | ApiError::Unavailable(_)
    ) {
        return Err(e.into());
    }
    let q: QueuePageQuery = back
        .split_once('?')
        .and_then(|(_, q)| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let mut page = build(state, caller, csrf, &q).await?;
    page.error = Some(super::problem_text(&e));
    render_status(e.status(), &page)
}

/// `POST /queue/items/{id}/start`: starts the item's playbook and opens its
/// first step.
pub async fn start(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<BackForm>,
) -> Result<Response, PageError> {
    match api::start_item(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
    )
    .await
    {
        Ok((_, JsonOut(d))) => {
            let j = &d.journey;
            let to = match j.stage.as_deref() {
                Some(s) => format!("/journeys/{}/steps/{s}?done=started", j.id),
                None => format!("/journeys/{}?done=started", j.id),
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) => refused(&state, &caller, &csrf, &local_path(f.next.as_deref()), e).await,
    }
}

/// A form that says where to go back to.
#[derive(Deserialize)]
pub struct BackForm {
    next: Option<String>,
}

/// A saved action from the queue.
#[derive(Deserialize)]
pub struct ItemActionForm {
    action: String,
    until: Option<String>,
    reason: Option<String>,
    next: Option<String>,
}

/// `POST /queue/items/{id}/actions`: a saved action on an item (the queue
/// offers snooze, until a time), back to the queue with a notice.
pub async fn item_action(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<ItemActionForm>,
) -> Result<Response, PageError> {
    let back = local_path(f.next.as_deref());
    let back = if back.starts_with("/queue") {
        back
    } else {
        "/queue".into()
    };
    let done = match f.action.as_str() {
        "snooze" => "snoozed",
        "escalate" => "escalated",
        "schedule" => "scheduled",
        "skip" => "skipped",
        _ => "recorded",
    };
    let body = json!({
        "action": f.action,
        "until": f.until.as_deref().and_then(until_of),
        "reason": f.reason.filter(|r| !r.trim().is_empty()),
    });
    let body = strip_nulls(body);
    match api::item_action(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
        Json(body),
    )
    .await
    {
        Ok(_) => Ok(redirect(&with_done(&back, done))),
        Err(e) => refused(&state, &caller, &csrf, &back, e).await,
    }
}

/// A JSON object without its `null` members (the API refuses a member an
/// action does not take, even empty).
pub fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

// --- to-dos ------------------------------------------------------------------------

/// Completing or skipping a to-do.
#[derive(Deserialize)]
pub struct TodoActionForm {
    action: String,
    next: Option<String>,
}

/// `POST /todos/{id}`: complete or skip a to-do, back where the person was.
pub async fn todo_action(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<TodoActionForm>,
) -> Result<Response, PageError> {
    let done = match f.action.as_str() {
        "complete" => "todo-completed",
        "skip" => "todo-skipped",
        _ => {
            return Err(PageError::BadRequest(
                "A to-do is completed or skipped.".into(),
            ));
        }
    };
    let _ = desk::update_todo(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
        Json(json!({ "action": f.action })),
    )
    .await?;
    let back = local_path(f.next.as_deref());
    Ok(redirect(&with_done(&back, done)))
}

/// A to-do to add to a playbook's step.
#[derive(Deserialize)]
pub struct NewTodoForm {
    pub title: String,
    pub due_date: Option<String>,
    pub priority: Option<String>,
}

/// Creates a to-do of a journey's step through the desk API.
pub async fn add_todo(
    state: &AppState,
    caller: &Caller,
    trace: TraceId,
    journey: &str,
    step: &str,
    f: NewTodoForm,
) -> Result<(), ApiError> {
    let body = strip_nulls(json!({
        "title": f.title,
        "due_date": f.due_date.filter(|d| !d.trim().is_empty()),
        "priority": f.priority.filter(|p| !p.trim().is_empty()),
        "journey_id": journey,
        "step": step,
    }));
    desk::create_todo(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Json(body),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn due_dates_read_as_words() {
        let today = date!(2027 - 03 - 01);
        assert_eq!(due_words(today, today), "due today (2027-03-01)");
        assert_eq!(
            due_words(date!(2027 - 03 - 11), today),
            "due in 10 days (2027-03-11)"
        );
        assert_eq!(
            due_words(date!(2027 - 02 - 20), today),
            "overdue: due 2027-02-20, 9 days ago"
        );
        assert_eq!(
            due_words(date!(2027 - 02 - 28), today),
            "overdue: due 2027-02-28, yesterday"
        );
    }

    #[test]
    fn figures_are_grouped() {
        assert_eq!(figure(300_000.0), "300,000");
        assert_eq!(figure(1_234_567.891), "1,234,567.89");
        assert_eq!(figure(-1500.5), "-1,500.5");
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(42.0), "42");
    }

    #[test]
    fn local_times_become_rfc3339() {
        assert_eq!(
            until_of("2027-03-04T09:00").as_deref(),
            Some("2027-03-04T09:00:00Z")
        );
        assert_eq!(
            until_of("2027-03-04T09:00:30").as_deref(),
            Some("2027-03-04T09:00:30Z")
        );
        assert_eq!(
            until_of("2027-03-04T09:00:00+02:00").as_deref(),
            Some("2027-03-04T09:00:00+02:00")
        );
        assert_eq!(until_of("  "), None);
        assert_eq!(with_done("/queue", "x"), "/queue?done=x");
        assert_eq!(
            with_done("/queue?owner=a#i", "x"),
            "/queue?owner=a&done=x#i"
        );
    }
}

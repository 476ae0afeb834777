//! The web inbox in a real browser (headless Chromium over WebDriver) against the real stack:
//! processes and Redis. A notification sent over gRPC appears on the open page within 1 s
//! without a reload, the badge counts it, marking it read changes the badge, the subscription
//! button unsubscribes and subscribes the user (with protection on too), and after
//! frontend-service is killed and started again on its port the page catches up on what was
//! sent meanwhile, nothing missing, nothing doubled. Once in open mode, once with
//! `AUTH_SECRET` (signed in through the page's form, the session an HttpOnly cookie).
//!
//! Run alone: `cargo test -p integration-tests --test browser`. Screenshots land in
//! `target/browser/`. Without Chromium it is skipped, loudly — except under `CI=true`, where
//! that fails.

use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use fantoccini::Locator;
use integration_tests::{
    Stack,
    browser::Browser,
    helpers::{PATIENCE, eventually, protected_env, unique_email},
};
use serde_json::Value;

const PASSWORD: &str = "Str0ng-pass!";
/// The promise: a new notification is on the page within a second.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

fn screenshots() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("browser")
}

/// What the page shows: the notification ids in order, how many are unread, the badge, the
/// connection line, and the marker set before (a reload would have cleared it).
#[derive(Debug)]
struct Shown {
    ids: Vec<String>,
    unread: usize,
    badge: String,
    conn: String,
    not_reloaded: bool,
}

async fn shown(browser: &Browser) -> Shown {
    let value = browser
        .eval(
            "const items = [...document.querySelectorAll('#list li')];
             return {
               ids: items.map((li) => li.dataset.id),
               unread: items.filter((li) => li.classList.contains('unread')).length,
               badge: document.getElementById('badge').textContent,
               conn: document.getElementById('conn').textContent,
               marker: window.inboxTestMarker === 1,
             };",
        )
        .await;
    let text = |field: &str| value[field].as_str().unwrap_or_default().to_owned();
    Shown {
        ids: value["ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        unread: value["unread"].as_u64().unwrap_or(0) as usize,
        badge: text("badge"),
        conn: text("conn"),
        not_reloaded: value["marker"] == true,
    }
}

/// Polls the page until `done` holds, for at most `within`; panics with what it showed.
async fn until(
    browser: &Browser,
    what: &str,
    within: Duration,
    done: impl Fn(&Shown) -> bool,
) -> Shown {
    let started = Instant::now();
    loop {
        let now = shown(browser).await;
        if done(&now) {
            return now;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; the page shows {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fill(browser: &Browser, field: &str, text: &str) {
    let input = browser
        .client
        .find(Locator::Id(field))
        .await
        .unwrap_or_else(|err| panic!("#{field}: {err}"));
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

async fn click(browser: &Browser, css: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{css}: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("click {css}: {err}"));
}

/// The subscription button's label, once the page shows it.
async fn subscription_button(browser: &Browser) -> Option<String> {
    let value = browser
        .eval(
            "const button = document.getElementById('sub-toggle');
             return button.hidden ? null : button.textContent;",
        )
        .await;
    value.as_str().map(str::to_owned)
}

fn assert_each_once(shown: &Shown) {
    let distinct: HashSet<&String> = shown.ids.iter().collect();
    assert_eq!(
        distinct.len(),
        shown.ids.len(),
        "a notification is shown twice: {shown:?}"
    );
}

async fn inbox_in_a_real_browser(protected: bool) {
    let Some(browser) = Browser::start(&screenshots()).await else {
        return;
    };
    let env = if protected {
        protected_env(&[])
    } else {
        Vec::new()
    };
    let mut stack = Stack::start_with_env(&env).await;
    let mode = if protected { "protected" } else { "open" };

    // Arrange: Alice signs up through the page's API; Bob through the page itself, except
    // when protected, where he signs up by API and signs in through the page's form.
    let alice = unique_email("alice");
    let (status, body) = stack.page_sign_up(&alice, PASSWORD, "Alice").await;
    assert_eq!(status, 201, "{body}");
    let bob = unique_email("bob");
    let client = &browser.client;
    client
        .goto(&stack.page_url("/"))
        .await
        .expect("open the page");
    if protected {
        let (status, body) = stack.page_sign_up(&bob, PASSWORD, "Bob").await;
        assert_eq!(status, 201, "{body}");
        fill(&browser, "signin-email", &bob).await;
        fill(&browser, "signin-password", PASSWORD).await;
        click(&browser, "#signin-form button[type=submit]").await;
    } else {
        fill(&browser, "signup-name", "Bob").await;
        fill(&browser, "signup-email", &bob).await;
        fill(&browser, "signup-password", PASSWORD).await;
        click(&browser, "#signup-form button[type=submit]").await;
    }
    browser
        .eval("window.inboxTestMarker = 1; return null;")
        .await;
    until(&browser, "the live feed open", PATIENCE, |s| {
        s.conn == "Live"
    })
    .await;
    if protected {
        let cookies = client.get_all_cookies().await.expect("cookies");
        let session = cookies
            .iter()
            .find(|cookie| cookie.name() == "inbox_token")
            .expect("the sign-in set the inbox_token cookie");
        assert_eq!(session.http_only(), Some(true), "{session:?}");
        assert_eq!(
            format!("{:?}", session.same_site()),
            "Some(Strict)",
            "{session:?}"
        );
        let script_sees = browser.eval("return document.cookie;").await;
        assert!(
            !script_sees
                .as_str()
                .unwrap_or_default()
                .contains("inbox_token"),
            "{script_sees}"
        );
    }
    // The subscription button, with protection on too: Bob unsubscribes and subscribes again.
    for (label, now) in [("Unsubscribe", false), ("Subscribe", true)] {
        eventually(&format!("[{mode}] the {label} button"), || async {
            (subscription_button(&browser).await.as_deref() == Some(label)).then_some(())
        })
        .await;
        click(&browser, "#sub-toggle").await;
        eventually(&format!("[{mode}] {label} stored"), || async {
            let stored = stack.stored_subscription(&bob).await?;
            (stored["subscribed"] == now).then_some(())
        })
        .await;
    }
    let alice_token = if protected {
        Some(stack.token(&alice, PASSWORD).await)
    } else {
        None
    };

    // Act: Alice sends over gRPC; Bob's open page shows it within a second, unreloaded.
    stack
        .send_as(&alice, &bob, "hello Bob", alice_token.as_deref())
        .await;
    let sent = Instant::now();
    let first = until(&browser, "the new notification", LIVE_WITHIN, |s| {
        s.ids.len() == 1
    })
    .await;
    eprintln!(
        "[{mode}] send answered → shown on the page in {:?}",
        sent.elapsed()
    );
    assert!(first.not_reloaded, "the page was reloaded: {first:?}");
    until(&browser, "the badge counting it", LIVE_WITHIN, |s| {
        s.badge == "1" && s.unread == 1
    })
    .await;
    browser.screenshot(&format!("inbox-{mode}")).await;

    // Marking it read (with the keyboard: focus the button, press Enter) changes the badge.
    let read = client
        .find(Locator::Css("#list li button.read"))
        .await
        .expect("Mark read");
    read.send_keys("\u{E007}")
        .await
        .expect("press Enter on Mark read");
    until(&browser, "the badge after marking read", PATIENCE, |s| {
        s.badge == "0" && s.unread == 0
    })
    .await;

    // frontend-service dies; three messages are sent meanwhile; it comes back on its port.
    stack.frontend.kill();
    until(&browser, "the page noticing the drop", PATIENCE, |s| {
        s.conn != "Live"
    })
    .await;
    for content in ["while down 1", "while down 2", "while down 3"] {
        stack
            .send_as(&alice, &bob, content, alice_token.as_deref())
            .await;
    }
    stack.frontend.restart().await;
    let caught_up = until(&browser, "the page catching up", PATIENCE, |s| {
        s.ids.len() == 4 && s.badge == "3" && s.conn == "Live"
    })
    .await;
    assert!(
        caught_up.not_reloaded,
        "the page was reloaded: {caught_up:?}"
    );
    assert_each_once(&caught_up);
    // Nothing more is on its way: one more message arrives live, after the caught-up ones,
    // and the page then holds exactly the five the store holds, each once.
    stack
        .send_as(&alice, &bob, "after the restart", alice_token.as_deref())
        .await;
    let after = until(&browser, "the message after the restart", PATIENCE, |s| {
        s.ids.len() >= 5
    })
    .await;
    assert_eq!(after.ids.len(), 5, "{after:?}");
    assert_each_once(&after);
    assert_eq!(after.badge, "4", "{after:?}");
    let stored: HashSet<String> = stack
        .stored_notifications(&bob)
        .await
        .iter()
        .filter_map(|n| n["notification_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stored, after.ids.iter().cloned().collect::<HashSet<_>>());
    browser.screenshot(&format!("after-restart-{mode}")).await;
    browser.close().await;
}

#[tokio::test]
async fn in_open_mode_the_inbox_updates_live_and_catches_up_after_a_frontend_restart() {
    inbox_in_a_real_browser(false).await;
}

#[tokio::test]
async fn with_protection_the_inbox_signs_in_by_form_updates_live_and_catches_up() {
    inbox_in_a_real_browser(true).await;
}

//! The members' web pages in standalone mode: the real binary and SQLite.
//!
//! - Over HTTP: sign-in sets an HttpOnly, SameSite=Strict cookie; a forged CSRF token, a
//!   POST from another origin, an expired or ended session and a customer are refused;
//!   a title of `<script>` is shown as text.
//! - In headless Chromium (Debian's `chromium`): ana signs in with JavaScript on, opens
//!   an allocation proposal and a ranked-choice question through the forms, comments and
//!   votes; ben votes with JavaScript off (radio buttons and a choice per rank); cleo
//!   too. After the close ana reads both results (the rounds chart and table, the
//!   fingerprint) and sees the new allocation in the co-op's chart. Every page is saved
//!   as a screenshot under `$CARGO_TARGET_TMPDIR/web-screenshots/`.

#![expect(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::coop::{self as c};
use common::{Gateway, scenario};
use headless_chrome::protocol::cdp::{DOM, Emulation, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;

/// The scenario's co-op, with allocation proposals decided by majority and free-text
/// questions by ranked choice.
fn manifests(period: &str) -> tempfile::TempDir {
    manifests_with(period, "RankedChoice")
}

/// The same, with free-text questions decided by `question_method`.
fn manifests_with(period: &str, question_method: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let yaml = scenario::manifests("commons", period, "{hub: Qwen/Qwen2.5-0.5B-Instruct}")
        .replace(
            "kind: Allocation, method: RankedChoice",
            "kind: Allocation, method: Majority",
        )
        .replace(
            "kind: FreeText, method: Approval",
            &format!("kind: FreeText, method: {question_method}"),
        );
    std::fs::write(dir.path().join("coop.yaml"), yaml).expect("the manifests are written");
    dir
}

/// A form body, `application/x-www-form-urlencoded`.
trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            body.append_pair(k.as_ref(), v.as_ref());
        }
        self.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.finish())
    }
}

/// A governance API answer, as `who` (a bearer token) reads it.
async fn api_json(gw: &Gateway, path: &str, who: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(who)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Signs `who` in with a token; returns the session cookie (`name=value`) and the
/// whole `Set-Cookie` header.
async fn sign_in(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(gw.url("/governance/sign-in"))
        .form_body(&[("key", key)])
        .send()
        .await
        .unwrap()
}

fn session_cookie(r: &reqwest::Response) -> (String, String) {
    let set = r
        .headers()
        .get(SET_COOKIE)
        .expect("a session cookie is set")
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, set)
}

async fn page(gw: &Gateway, cookie: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(gw.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_refuse_forged_forms_other_origins_expired_sessions_and_customers_and_escape_text() {
    let m = manifests("1h");
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &["--web-session-seconds", "3"]);
    let ana = c::token(c::SECRET, &c::claims("ana"));

    // Signed out: the sign-in form; a bad key is refused with the form again.
    let (status, html) = page(&gw, "", "/governance").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"sign-in\""), "{html}");
    let r = sign_in(&gw, "sk-synco-not-a-key").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // A customer is not a member.
    let r = sign_in(&gw, &c::token(c::SECRET, &c::claims("buyer"))).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Only members take part"));
    assert!(
        page(&gw, "synco_session=forged", "/governance/coop").await.0 == 401,
        "an unknown session shows the sign-in page"
    );

    // A member: a 303 to the proposals and a cookie the page's scripts cannot read.
    let r = sign_in(&gw, &ana).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/governance");
    let (cookie, set) = session_cookie(&r);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/governance", "Max-Age=3"] {
        assert!(set.contains(attribute), "{set}");
    }
    let (status, html) = page(&gw, &cookie, "/governance").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Signed in as <span id=\"member\">ana</span>"),
        "{html}"
    );
    assert!(!html.contains(&ana), "the key is never written into a page");
    let token = csrf(&html);

    // A title with markup is text; a forged token or another origin changes nothing.
    let title = "<script>alert(1)</script>";
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("kind", "FreeText".to_owned()),
            ("title", title.to_owned()),
            ("options", "grid\nsolar".to_owned()),
        ]
    };
    let forged = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .form_body(&form(&"0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("security token does not match")
    );
    let elsewhere = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form_body(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    let listed = api_json(&gw, "/v1/governance/proposals", &ana).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "nothing was proposed"
    );

    let made = client()
        .post(gw.url("/governance/new"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, gw.url(""))
        .form_body(&form(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 303, "{}", made.text().await.unwrap());
    let at = made.headers()[LOCATION].to_str().unwrap().to_owned();
    let (status, html) = page(&gw, &cookie, &at).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains(title), "the title is escaped");

    // A member admission and a surplus price open through their forms too.
    for fields in [
        vec![
            ("kind", "MemberAdmission"),
            ("title", "Admit the mill"),
            ("member_name", "mill"),
            ("member_display_name", "The Mill"),
            ("member_class", "community"),
            ("member_identity", "mill"),
            ("member_organisation", "WorkerCoop"),
        ],
        vec![
            ("kind", "SurplusPrice"),
            ("title", "Sell less, dearer"),
            ("max_share", "20"),
            ("currency", "EUR"),
            ("price_input", "15"),
            ("price_output", "40"),
        ],
    ] {
        let mut sent = vec![("csrf", token.as_str())];
        sent.extend(fields);
        let made = client()
            .post(gw.url("/governance/new"))
            .header(COOKIE, &cookie)
            .form_body(&sent)
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 303, "{sent:?}: {}", made.text().await.unwrap());
        let at = made.headers()[LOCATION].to_str().unwrap().to_owned();
        let (_, html) = page(&gw, &cookie, &at).await;
        assert!(html.contains("id=\"phase\">Open<"), "{html}");
        assert!(
            html.contains("memberAdmission") || html.contains("surplusPrice"),
            "{html}"
        );
    }

    // Ending the session ends it on the server, not only in this browser.
    let out = client()
        .post(gw.url("/governance/sign-out"))
        .header(COOKIE, &cookie)
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(page(&gw, &cookie, "/governance/coop").await.0, 401);

    // An API key signs a member in as well as a token does.
    let key = c::create_key(&["--member", "ben"], data.path(), None);
    let r = sign_in(&gw, &key).await;
    assert_eq!(r.status(), 303);
    let (bens, _) = session_cookie(&r);
    assert!(
        page(&gw, &bens, "/governance")
            .await
            .1
            .contains("Signed in as <span id=\"member\">ben</span>")
    );

    // A session expires (here after 3 s).
    let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
    assert_eq!(page(&gw, &cookie, "/governance/coop").await.0, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, html) = page(&gw, &cookie, "/governance/coop").await;
    assert_eq!(status, 401);
    assert!(html.contains("Your session has expired"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_score_dot_and_consent_ballots_are_cast_through_their_forms() {
    // (the bylaws' method for questions, the ballot form the page shows, what is sent)
    type Fields = &'static [(&'static str, &'static str)];
    let cases: [(&str, &str, Fields); 4] = [
        (
            "Approval",
            "approval",
            &[("approve", "grid"), ("approve", "wind")],
        ),
        (
            "Score",
            "score",
            &[("score:grid", "4"), ("score:solar", "1"), ("score:wind", "0")],
        ),
        (
            "DotVoting",
            "points",
            &[("points:grid", "6"), ("points:wind", "4")],
        ),
        ("Consent", "consent", &[("position", "StandAside")]),
    ];
    let ana = c::token(c::SECRET, &c::claims("ana"));
    for (method, form, fields) in cases {
        let m = manifests_with("1h", method);
        let data = tempfile::tempdir().unwrap();
        let gw = c::standalone(m.path(), data.path(), None, &[]);
        let (cookie, _) = session_cookie(&sign_in(&gw, &ana).await);
        let token = csrf(&page(&gw, &cookie, "/governance/new?kind=FreeText").await.1);
        let options = if method == "Consent" {
            ""
        } else {
            "grid\nsolar\nwind"
        };
        let made = client()
            .post(gw.url("/governance/new"))
            .header(COOKIE, &cookie)
            .form_body(&[
                ("csrf", token.as_str()),
                ("kind", "FreeText"),
                ("title", "Which energy first?"),
                ("options", options),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 303, "{method}: {}", made.text().await.unwrap());
        let at = made.headers()[LOCATION].to_str().unwrap().to_owned();
        let (_, html) = page(&gw, &cookie, &at).await;
        assert!(
            html.contains(&format!("data-method=\"{form}\"")),
            "{method}: {html}"
        );
        let mut ballot = vec![("csrf", token.as_str())];
        ballot.extend_from_slice(fields);
        let cast = client()
            .post(gw.url(&format!("{at}/ballot")))
            .header(COOKIE, &cookie)
            .form_body(&ballot)
            .send()
            .await
            .unwrap();
        assert_eq!(cast.status(), 303, "{method}: {}", cast.text().await.unwrap());
        let receipt_at = cast.headers()[LOCATION].to_str().unwrap().to_owned();
        let receipt = receipt_at.split("receipt=").nth(1).expect("a receipt").to_owned();
        assert!(
            page(&gw, &cookie, &receipt_at).await.1.contains(&receipt),
            "{method}"
        );
        let name = at.rsplit('/').next().unwrap();
        let view = api_json(&gw, &format!("/v1/governance/proposals/{name}"), &ana).await;
        assert_eq!(view["ballotsCast"], 1, "{method}: {view}");
    }
}

/// axe-core, installed by `.ci/run` (`npm ci` in `gateway/tests/web`).
fn axe_source() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; install it with `npm ci` in gateway/tests/web (.ci/run does)",
            path.display()
        )
    })
}

/// The serious and critical accessibility violations axe-core finds on the page in
/// `tab`, as JSON.
fn violations(tab: &Tab, axe: &str) -> String {
    tab.evaluate(axe, false).expect("axe-core loads");
    tab.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations\
               .filter(v => v.impact === 'serious' || v.impact === 'critical')\
               .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))))",
        true,
    )
    .expect("axe-core runs")
    .value
    .and_then(|v| v.as_str().map(str::to_owned))
    .expect("axe-core answers")
}

/// Fails on any serious or critical accessibility violation on the page in `tab`.
fn accessible(tab: &Tab, axe: &str, page: &str) {
    assert_eq!(violations(tab, axe), "[]", "accessibility violations on {page}");
}

struct Shots(PathBuf);

impl Shots {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn take(&self, tab: &Tab, name: &str) {
        let png = tab
            .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("a screenshot");
        std::fs::write(self.0.join(format!("{name}.png")), png).unwrap();
    }
}

/// The element `selector` finds, or a failure that shows the page.
fn find<'a>(tab: &'a Tab, selector: &str) -> headless_chrome::Element<'a> {
    tab.wait_for_element(selector).unwrap_or_else(|e| {
        panic!(
            "{selector}: {e} on {}:\n{}",
            tab.get_url(),
            tab.get_content().unwrap_or_default()
        )
    })
}

fn open(tab: &Tab, url: &str) {
    tab.navigate_to(url).unwrap().wait_until_navigated().unwrap();
}

// The pages are driven with the keyboard, through the DevTools DOM and Input domains
// only: they work with the page's scripts off, and show that every control can be
// reached and used without a mouse.

/// Moves the keyboard focus to `selector`.
fn focus(tab: &Tab, selector: &str) {
    let node = find(tab, selector).backend_node_id;
    tab.call_method(DOM::Focus {
        node_id: None,
        backend_node_id: Some(node),
        object_id: None,
    })
    .unwrap();
}

/// Presses a submit button with Enter and waits for the next page, which has `then`
/// (and the page before did not).
fn submit(tab: &Tab, selector: &str, then: &str) {
    focus(tab, selector);
    tab.press_key("Enter").unwrap();
    find(tab, then);
}

/// Checks a radio button or a checkbox with the space bar.
fn check(tab: &Tab, selector: &str) {
    focus(tab, selector);
    tab.press_key(" ").unwrap();
}

fn type_in(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    // Inserted in one go (typing key by key costs a round trip per character).
    tab.send_character(text).unwrap();
}

/// An element's HTML (read without running a script in the page).
fn html(tab: &Tab, selector: &str) -> String {
    let node = find(tab, selector).backend_node_id;
    tab.call_method(DOM::GetOuterHTML {
        node_id: None,
        backend_node_id: Some(node),
        object_id: None,
        include_shadow_dom: None,
    })
    .unwrap()
    .outer_html
}

/// Replaces a short field's text, as a member would: to its end, erase, type.
fn replace(tab: &Tab, selector: &str, text: &str) {
    focus(tab, selector);
    tab.press_key("End").unwrap();
    for _ in 0..4 {
        tab.press_key("Backspace").unwrap();
    }
    tab.send_character(text).unwrap();
}

/// Picks the `index`th option of a select with the keyboard.
fn choose(tab: &Tab, selector: &str, index: usize) {
    focus(tab, selector);
    for _ in 0..index {
        tab.press_key("ArrowDown").unwrap();
    }
}

fn text(tab: &Tab, selector: &str) -> String {
    find(tab, selector).get_inner_text().unwrap()
}

/// A signed-in tab for `who`, with or without JavaScript, in a browser context of its
/// own (its own cookies, as another person's browser).
fn member_tab(browser: &Browser, gw: &Gateway, who: &str, javascript: bool) -> std::sync::Arc<Tab> {
    let tab = browser.new_context().unwrap().new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(20));
    if !javascript {
        tab.call_method(Emulation::SetScriptExecutionDisabled { value: true })
            .unwrap();
    }
    open(&tab, &gw.url("/governance"));
    type_in(&tab, "#key", &c::token(c::SECRET, &c::claims(who)));
    submit(&tab, "#sign-in", "#member");
    assert!(html(&tab, "#member").contains(&format!(">{who}<")));
    tab
}

/// Votes on the two proposals: a position on the allocation, a ranking on the question.
fn vote(
    tab: &Tab,
    gw: &Gateway,
    allocation: &str,
    question: &str,
    position: &str,
    ranks: &[usize],
) -> String {
    open(tab, &gw.url(&format!("/governance/proposals/{allocation}")));
    check(tab, &format!("input[name=position][value={position}]"));
    submit(tab, "#cast", "#receipt");
    let receipt = html(tab, "#receipt");
    open(tab, &gw.url(&format!("/governance/proposals/{question}")));
    for (i, option) in ranks.iter().enumerate() {
        choose(tab, &format!("#rank{}", i + 1), *option);
    }
    submit(tab, "#cast", "#receipt");
    assert!(html(tab, "#receipt").contains("Your ballot is recorded"));
    receipt
}

#[tokio::test(flavor = "multi_thread")]
async fn members_propose_comment_and_vote_in_chromium_with_and_without_javascript() {
    let period = 120;
    let m = manifests(&format!("{period}s"));
    let data = tempfile::tempdir().unwrap();
    let gw = c::standalone(m.path(), data.path(), None, &[]);
    let shots = Shots::new();
    let axe = axe_source();
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(common::chromium().expect("Chromium")))
            .sandbox(false)
            .headless(true)
            .window_size(Some((1100, 1400)))
            .idle_browser_timeout(Duration::from_secs(180))
            .build()
            .unwrap(),
    )
    .unwrap();

    // The sign-in page.
    let visitor = browser.new_context().unwrap().new_tab().unwrap();
    open(&visitor, &gw.url("/governance"));
    shots.take(&visitor, "sign-in");
    accessible(&visitor, &axe, "sign-in");

    // ana, with JavaScript: signs in, opens an allocation proposal and a question.
    let ana = member_tab(&browser, &gw, "ana", true);
    shots.take(&ana, "proposals-empty");
    accessible(&ana, &axe, "proposals-empty");
    open(&ana, &gw.url("/governance/new?kind=Allocation"));
    type_in(&ana, "#title", "Schools first this winter");
    type_in(
        &ana,
        "#body",
        "Raise the community floor to 60% and sell at most 20%.",
    );
    replace(&ana, "#floor-1", "60");
    replace(&ana, "#surplus_cap", "20");
    // The script keeps the total; without it the server's figure stays.
    assert_eq!(text(&ana, "#share-total"), "80");
    shots.take(&ana, "new-allocation");
    accessible(&ana, &axe, "new-allocation");
    submit(&ana, "#propose", "#phase");
    let allocation = ana.get_url().rsplit('/').next().unwrap().to_owned();
    assert_eq!(text(&ana, "#phase"), "Open", "{allocation}");

    open(&ana, &gw.url("/governance/new?kind=FreeText"));
    type_in(&ana, "#title", "Which energy first?");
    type_in(&ana, "#options", "grid\nsolar\nwind");
    submit(&ana, "#propose", "#phase");
    let question = ana.get_url().rsplit('/').next().unwrap().to_owned();

    // A comment and a reply.
    open(&ana, &gw.url(&format!("/governance/proposals/{allocation}")));
    type_in(&ana, "#comment-body", "Schools lost hours last winter.");
    submit(&ana, "#comment", "#discussion ~ article");
    assert!(ana.get_url().contains("#comment-"), "{}", ana.get_url());
    assert!(text(&ana, "#discussion ~ article").contains("Schools lost hours"));

    // Votes: ana Yes and solar > grid; ben (no JavaScript) Yes and grid > solar; cleo
    // No and wind > grid. dan delegates to ben (in the manifests).
    let receipt = vote(&ana, &gw, &allocation, &question, "Yes", &[2, 1]);
    assert!(receipt.contains("Your ballot is recorded"), "{receipt}");
    shots.take(&ana, "proposal-receipt");
    accessible(&ana, &axe, "proposal-receipt");
    let ben = member_tab(&browser, &gw, "ben", false);
    open(&ben, &gw.url(&format!("/governance/proposals/{allocation}")));
    shots.take(&ben, "proposal-open-no-javascript");
    vote(&ben, &gw, &allocation, &question, "Yes", &[1, 2]);
    let cleo = member_tab(&browser, &gw, "cleo", true);
    vote(&cleo, &gw, &allocation, &question, "No", &[3, 1]);
    // A second ballot through the page is refused, and says why.
    open(&cleo, &gw.url(&format!("/governance/proposals/{allocation}")));
    assert!(cleo.find_element("#cast").is_ok());
    check(&cleo, "input[name=position][value=Yes]");
    submit(&cleo, "#cast", "#message");
    assert!(
        html(&cleo, "#message").contains("already voted"),
        "{}",
        html(&cleo, "#message")
    );

    open(&ana, &gw.url("/governance"));
    shots.take(&ana, "proposals-open");
    accessible(&ana, &axe, "proposals-open");

    // After the close: the results and the new allocation.
    let token = c::token(c::SECRET, &c::claims("ana"));
    let phase = |name: String| {
        let (gw, token) = (&gw, &token);
        async move {
            let v = api_json(gw, &format!("/v1/governance/proposals/{name}"), token).await;
            v["status"]["phase"].as_str().unwrap_or_default().to_owned()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(period + 60);
    // A question without an effect is Applied as soon as it passes, like any other.
    while !(phase(allocation.clone()).await == "Applied" && phase(question.clone()).await == "Applied") {
        assert!(
            std::time::Instant::now() < deadline,
            "the proposals did not close:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    open(&ana, &gw.url(&format!("/governance/proposals/{allocation}")));
    assert_eq!(text(&ana, "#phase"), "Applied");
    // ana, ben and dan (by delegation to ben) for; cleo against.
    let counts = text(&ana, "#counts");
    assert!(counts.contains("Yes\t3") && counts.contains("No\t1"), "{counts}");
    assert_eq!(text(&ana, "#fingerprint").len(), 64);
    assert!(
        ana.find_element("#cast").is_err(),
        "no ballot form after the close"
    );
    shots.take(&ana, "result-allocation");
    accessible(&ana, &axe, "result-allocation");

    // 4 ballots' weight (dan's by delegation to ben): grid 2, solar 1, wind 1; one of
    // the last two goes out by the published lot, its ballot moves to grid: grid 3 of 4.
    open(&ana, &gw.url(&format!("/governance/proposals/{question}")));
    assert!(
        text(&ana, "#outcome").contains("grid won"),
        "{}",
        text(&ana, "#outcome")
    );
    let svg = ana.wait_for_element("#rounds-chart svg").unwrap();
    assert!(svg.get_content().unwrap().contains("Round 2"));
    assert_eq!(
        ana.wait_for_element("#rounds tbody")
            .unwrap()
            .find_elements("tr")
            .unwrap()
            .len(),
        2
    );
    shots.take(&ana, "result-rounds");
    accessible(&ana, &axe, "result-rounds");

    open(&ana, &gw.url("/governance/coop"));
    let shares = text(&ana, "#shares");
    assert!(
        shares.contains("class community") && shares.contains("60%"),
        "{shares}"
    );
    assert!(shares.contains("20%"), "{shares}");
    assert!(ana.wait_for_element("#allocation-chart svg").is_ok());
    shots.take(&ana, "coop");
    accessible(&ana, &axe, "coop");

    // On a 375 px phone the pages fit the screen's width.
    ana.call_method(Emulation::SetDeviceMetricsOverride {
        width: 375,
        height: 812,
        device_scale_factor: 2.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
    for path in [
        "/governance".to_owned(),
        format!("/governance/proposals/{question}"),
        "/governance/coop".to_owned(),
    ] {
        open(&ana, &gw.url(&path));
        let wide = ana
            .evaluate("document.documentElement.scrollWidth <= window.innerWidth", false)
            .unwrap()
            .value
            .and_then(|v| v.as_bool());
        assert_eq!(wide, Some(true), "{path} is wider than a 375 px screen");
    }
    shots.take(&ana, "phone-coop");

    open(&ana, &gw.url("/governance/delegation"));
    shots.take(&ana, "delegation");
    accessible(&ana, &axe, "delegation");
    // The check can fail: a field without a label is a critical violation.
    ana.evaluate(
        "document.querySelector('main').appendChild(document.createElement('input'))",
        false,
    )
    .unwrap();
    assert!(
        violations(&ana, &axe).contains("\"label\""),
        "axe-core finds an unlabelled field"
    );
}

//! The batch page's live updates: `GET /console/batches/<id>/events`, server-sent
//! `progress` events with what `progress` gathers (counts per state, ETA, cost spent and
//! reserved against the budget, provider pauses and cool-downs) and the variants that
//! changed since the previous event (all of them in the first), at most every [`EVERY`]
//! and at least every [`REFRESH`] while the batch runs, ending once it is finished or
//! after [`MAX_STREAM`] (the browser reconnects). The page's small inline script (allowed
//! by its CSP nonce) applies them and sends the keep/reject forms without a reload; no
//! build step.

use super::progress::{self, Variant};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two looks at the batch.
pub const EVERY: Duration = Duration::from_millis(500);
/// The records are read again at least this often while nothing counted changes (for the
/// providers' pauses, the reserved cost).
pub const REFRESH: Duration = Duration::from_secs(3);
/// Longest one event stream runs.
pub const MAX_STREAM: Duration = Duration::from_secs(3600);

/// The script of the batch page: follows the events and updates the figures in place
/// (on a filtered page, a variant that enters the page's state is fetched with the page
/// and inserted, forms and all, as the server renders it), and sends the mark forms with
/// fetch.
pub const SCRIPT: &str = r#"(function(){
function $(id){return document.getElementById(id);}
function text(id,t){var e=$(id);if(e)e.textContent=t;}
function fig(job){return document.querySelector('figure.variant[data-job="'+job+'"]');}
function apply(f,v){
 f.setAttribute("data-state",v.state);
 var s=f.querySelector(".state-name");if(s)s.textContent=v.state;
 var er=f.querySelector(".err");if(er)er.textContent=v.error||"";
 if(v.mark)f.setAttribute("data-mark",v.mark);else f.removeAttribute("data-mark");
 if(v.output&&!f.querySelector("video")){var n=f.querySelector(".none");
  var vid=document.createElement("video");vid.controls=true;vid.preload="metadata";vid.src=v.output;
  if(n)n.replaceWith(vid);else f.insertBefore(vid,f.firstChild);}
}
function kept(){text("kept-count",document.querySelectorAll('figure.variant[data-mark="keep"]').length);}
var filling=false,again=false;
function refill(){if(filling){again=true;return;}filling=true;
 fetch(location.href,{credentials:"same-origin"}).then(function(r){if(!r.ok)throw r;return r.text();})
 .then(function(t){var nv=new DOMParser().parseFromString(t,"text/html").getElementById("variants"),vs=$("variants");
  if(nv&&vs)nv.querySelectorAll("figure.variant").forEach(function(n){var j=n.getAttribute("data-job");if(fig(j))return;
   var next=null;vs.querySelectorAll("figure.variant").forEach(function(e){if(!next&&e.getAttribute("data-job")>j)next=e;});
   vs.insertBefore(document.importNode(n,true),next);});kept();})
 .catch(function(){}).then(function(){filling=false;if(again){again=false;refill();}});}
var es=new EventSource(location.pathname+"/events");
es.addEventListener("progress",function(e){var d=JSON.parse(e.data);
 text("done",d.done);text("total",d.total);text("eta",d.eta);text("cost",d.cost.text);
 for(var k in d.counts){text("count-"+k,d.counts[k]);text("fcount-"+k,d.counts[k]);}
 text("fcount-all",d.total);
 var ul=$("pauses");if(ul){ul.textContent="";d.provider_lines.forEach(function(l){
  var li=document.createElement("li");li.textContent=l;ul.appendChild(li);});}
 var vs=$("variants"),filter=vs?vs.getAttribute("data-filter"):"all",entered=false;
 d.variants.forEach(function(v){var f=fig(v.job);
  if(f&&filter!=="all"&&filter!==v.state){f.remove();return;}
  if(f)apply(f,v);else if(filter===v.state)entered=true;});
 if(entered)refill();
 kept();
 var bs=$("batch-state");if(bs)bs.setAttribute("data-finished",d.finished?"true":"false");
 if(d.finished){text("finished"," · finished");es.close();}});
document.addEventListener("submit",function(e){var form=e.target;
 if(!form.classList||!form.classList.contains("mark"))return;
 e.preventDefault();var body=new URLSearchParams(new FormData(form));
 if(e.submitter&&e.submitter.name)body.set(e.submitter.name,e.submitter.value);
 fetch(form.action,{method:"POST",body:body,headers:{"Accept":"application/json"},credentials:"same-origin"})
 .then(function(r){if(!r.ok)throw r;return r.json();})
 .then(function(d){var f=form.closest("figure");
  if(d.mark==="none")f.removeAttribute("data-mark");else f.setAttribute("data-mark",d.mark);kept();})
 .catch(function(){location.reload();});});
})();"#;

struct Follow {
    st: Arc<AppState>,
    id: String,
    started: Instant,
    first: bool,
    over: bool,
    /// What each variant looked like when last sent.
    seen: BTreeMap<String, Variant>,
    /// The counters last read, and when the records were.
    last: Option<(u64, Vec<u64>, crate::money::Usd)>,
    read_at: Option<Instant>,
}

async fn progress(f: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    let mut f = f;
    loop {
        if f.over || f.started.elapsed() > MAX_STREAM {
            return None;
        }
        if !f.first {
            tokio::time::sleep(EVERY).await;
        }
        f.first = false;
        let info = match f.st.queue.batch(&f.id).await {
            Ok(Some(info)) => info,
            Ok(None) => {
                f.over = true;
                return Some((Ok(Event::default().event("gone").data("{}")), f));
            }
            // Redis is away: say so and try again next time.
            Err(_) => return Some((Ok(Event::default().event("unavailable").data("{}")), f)),
        };
        let now = (
            info.done,
            info.counts.values().copied().collect::<Vec<_>>(),
            info.cost_committed,
        );
        let fresh = f.read_at.is_some_and(|t| t.elapsed() < REFRESH);
        if fresh && f.last.as_ref() == Some(&now) && !info.is_finished() {
            continue;
        }
        let Ok(p) = progress::gather(&f.st, info).await else {
            return Some((Ok(Event::default().event("unavailable").data("{}")), f));
        };
        f.last = Some(now);
        f.read_at = Some(Instant::now());
        f.over = p.finished();
        let changed = progress::changed(&p, &mut f.seen);
        let data = p.to_json(&changed).to_string();
        return Some((Ok(Event::default().event("progress").data(data)), f));
    }
}

pub async fn events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = super::console::session_or_401(&st, &headers).await {
        return e.into_response();
    }
    if crate::batch::validate_batch_id(&id).is_err() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let follow = Follow {
        st,
        id,
        started: Instant::now(),
        first: true,
        over: false,
        seen: BTreeMap::new(),
        last: None,
        read_at: None,
    };
    let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(follow, progress));
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

// The patient's (or a guest's) side of a video consultation, in the browser: join the
// room, wait to be admitted, send camera and microphone, show the others' feeds.
// Signalling is the teleconference API (JSEP offer/answer over HTTP, non-trickle ICE);
// media goes to Janus. Opened as /app/teleconsultation/#appointment=<id>&token=<access
// token>, or by a guest as the doctor's link /app/teleconsultation/#guest=<link token>
// (the fragment never reaches a server).
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
const TELE = "/api/v1/teleconsultations";
let api = `${TELE}/${encodeURIComponent(params.get("appointment"))}`;
const headers = {
  Authorization: `Bearer ${params.get("token")}`,
  "Content-Type": "application/json",
};

// A guest link is single-use: it is redeemed once for a guest session, kept for this
// tab only, so that a reload comes back with the session rather than the spent link.
async function asGuest(link) {
  const kept = `healthflow-guest:${link}`;
  let guest = JSON.parse(sessionStorage.getItem(kept) || "null");
  if (guest === null) {
    const response = await fetch(`${TELE}/guest/redeem`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: link }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `redeem: ${response.status}`);
    guest = { appointment_id: body.appointment_id, guest_token: body.guest_token };
    sessionStorage.setItem(kept, JSON.stringify(guest));
  }
  api = `${TELE}/guest/${encodeURIComponent(guest.appointment_id)}`;
  delete headers.Authorization;
  headers["X-Guest-Token"] = guest.guest_token;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const status = (text) => { document.getElementById("status").textContent = text; };

async function call(method, path, body) {
  const response = await fetch(api + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `${method} ${path}: ${response.status}`);
  }
  return response.status === 204 ? null : response.json();
}

function gathered(pc) {
  return new Promise((done) => {
    if (pc.iceGatheringState === "complete") { done(); return; }
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
  });
}

async function admitted(participantId) {
  for (;;) {
    const room = await call("GET", "");
    const me = room.participants.find((p) => p.id === participantId);
    if (me && me.state === "admitted") return;
    status("Waiting for the doctor to let you in…");
    await sleep(1000);
  }
}

async function watch(feed, config) {
  const sub = await call("POST", "/media/subscriptions", { feed: feed.feed });
  const pc = new RTCPeerConnection(config);
  const stream = new MediaStream();
  pc.ontrack = (event) => {
    stream.addTrack(event.track);
    document.getElementById("remote").srcObject = stream;
  };
  await pc.setRemoteDescription(sub.jsep);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await call("POST", `/media/subscriptions/${sub.subscription_id}/answer`,
             { type: "answer", sdp: pc.localDescription.sdp });
  status("In consultation");
  return pc;
}

const watchers = new Map();

async function main() {
  status("Joining…");
  if (params.get("guest")) await asGuest(params.get("guest"));
  const joined = await call("POST", "/join");
  const config = { iceServers: joined.ice_servers };
  await admitted(joined.participant.id);
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById("local").srcObject = media;
  const publisher = new RTCPeerConnection(config);
  media.getTracks().forEach((track) => publisher.addTrack(track, media));
  await publisher.setLocalDescription(await publisher.createOffer());
  await gathered(publisher);
  const answer = await call("POST", "/media/publish",
                            { type: "offer", sdp: publisher.localDescription.sdp });
  await publisher.setRemoteDescription(answer.jsep);
  status("Connecting…");
  // a feed published anew (the other side reconnected) is watched again: the earlier
  // subscription carries nothing any more
  const watched = new Map();
  for (;;) {
    for (const feed of await call("GET", "/media/feeds")) {
      if (watched.get(feed.feed) !== feed.since) {
        const previous = watchers.get(feed.feed);
        watched.set(feed.feed, feed.since);
        watchers.set(feed.feed, await watch(feed, config));
        if (previous) previous.close();
      }
    }
    await sleep(1000);
  }
}

main().catch((error) => status(`Could not join: ${error.message}`));

package calendaremu

// Reads limited by the caller's access role, as Google limits them: a
// freeBusyReader sees every event as a busy block (times, no details), a
// reader sees private (and confidential, Google's alias) events the same
// way; writers and owners see everything. A calendar seen this way must
// never be mirrored as if complete, so the emulator hides what Google hides.

// detailsHidden reports whether a user of this role sees ev as a busy block.
func detailsHidden(role string, ev *event) bool {
	switch role {
	case "freeBusyReader":
		return true
	case "reader":
		return ev.b.Visibility == "private" || ev.b.Visibility == "confidential"
	}
	return false
}

// present is what a user of role receives for ev: the event (a tombstone in
// lists when cancelled, full when full), or its busy block.
func present(ev *event, full bool, role string, maxAttendees int) any {
	if (full || !ev.cancelled()) && detailsHidden(role, ev) {
		b := &ev.b
		// A busy block: the event without its details. Google keeps its
		// visibility, link and iCalUID (a freeBusyReader's events.list shows
		// "visibility": "private" on a private event's block).
		return &eventBody{Kind: "calendar#event", Etag: b.Etag, ID: b.ID, Status: b.Status, Updated: b.Updated, Start: b.Start,
			End: b.End, Transparency: b.Transparency, RecurringEventID: b.RecurringEventID, OriginalStartTime: b.OriginalStartTime,
			EventType: b.EventType, Visibility: b.Visibility, HTMLLink: b.HTMLLink, ICalUID: b.ICalUID}
	}
	return withMaxAttendees(ev.wire(full), maxAttendees)
}

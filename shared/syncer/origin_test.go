package syncer_test

import (
	"strings"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

// Every change message says which kind of sync found it (origin) and whose
// grant the calendar is read with (tenant, identityKey, externalId), in its body and its
// attributes (syncertest.Recorder checks they agree): the first full sync's
// history is "initial", an ordinary sync "incremental", a full sync after a
// 410 "resync", a purge of an unwatched calendar's mirror "purge".
//
// The first full sync's end is announced once on the lifecycle topic
// (calendar.initial_sync_complete, with its event count); later full syncs
// are not initial.
func TestChangeOrigin(t *testing.T) {
	e := newEnv(t)
	ann := &syncertest.Announcements{}
	s := e.syncer(func(o *syncer.Options) { o.Lifecycle = &lifecycle.Owner{Store: e.st, Announcer: ann} })
	var ids []string
	for range 5 {
		ids = append(ids, e.insert("e").Id)
	}
	external := ""
	want := func(step, origin, identity string, n int) {
		t.Helper()
		cs := e.rec.Changes()
		if len(cs) != n {
			t.Fatalf("%s: %d change messages, want %d", step, len(cs), n)
		}
		for _, c := range cs {
			if c.Origin != origin || c.IdentityKey != identity || c.SchemaVersion != messages.ChangeSchemaVersion ||
				c.Tenant != tenant.Default || c.ExternalID != external {
				t.Fatalf("%s: %s %s: origin %q identity %q schema %d tenant %q externalId %q; want %q %q %d %q %q", step, c.Change, c.EventID,
					c.Origin, c.IdentityKey, c.SchemaVersion, c.Tenant, c.ExternalID, origin, identity, messages.ChangeSchemaVersion, tenant.Default, external)
			}
		}
		e.rec.Reset()
	}
	e.mustNotify(s, messages.StateSync)
	want("first sync", messages.OriginInitial, "", 5)

	// Read with an identity's grant from now on (as a listing records it).
	identity := store.Grant{AuthMode: store.AuthDelegation, Subject: "ann@calsync.test"}.IdentityKey()
	external = "product-user-17"
	if _, err := e.st.CalendarRef(e.key).Update(e.ctx, []firestore.Update{{Path: "enrolledBy", Value: identity}, {Path: "externalId", Value: external}}); err != nil {
		t.Fatal(err)
	}
	e.update(ids[0], "changed")
	e.mustNotify(s, messages.StateExists)
	want("incremental sync", messages.OriginIncremental, identity, 1)

	e.update(ids[1], "changed while the token died")
	if err := e.srv.InvalidateSyncTokens(e.calID); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StateExists)
	want("full sync after a 410", messages.OriginResync, identity, 1)

	// A deleted event's message carries what the mirror held of it.
	e.remove(ids[2])
	e.mustNotify(s, messages.StateExists)
	cs := e.rec.Changes()
	want("a deletion", messages.OriginIncremental, identity, 1)
	lastKnown(t, cs[0], ids[2], `"summary":"e"`)

	if err := e.st.SetStatus(e.ctx, e.key, store.StatusUnwatched, "unenrolled", ""); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StatePurge)
	cs = e.rec.Changes()
	want("purge", messages.OriginPurge, identity, 4)
	for _, c := range cs {
		lastKnown(t, c, c.EventID, `"etag"`)
	}
	if ann.Err != nil {
		t.Fatal(ann.Err)
	}
	done := ann.Of(messages.LifecycleInitialSyncComplete)
	if len(done) != 1 || done[0].Events == nil || *done[0].Events != 5 || done[0].CalendarKey != e.key || done[0].Tenant != tenant.Default {
		t.Fatalf("initial_sync_complete: %+v, want one for %s with 5 events", done, e.key)
	}
}

// lastKnown checks that a deleted message carries the event as the mirror
// held it: its id, want in its JSON, none of calsync's own fields.
func lastKnown(t *testing.T, c messages.Change, id, want string) {
	t.Helper()
	lk := string(c.LastKnown)
	if c.Change != messages.ChangeDeleted || !strings.Contains(lk, `"id":"`+id+`"`) || !strings.Contains(lk, want) ||
		strings.Contains(lk, store.FieldSyncedAt) || strings.Contains(lk, store.FieldStartTime) {
		t.Fatalf("%s %s: lastKnown %s; want the event %s with %s", c.Change, c.EventID, lk, id, want)
	}
}

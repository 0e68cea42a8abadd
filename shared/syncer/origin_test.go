package syncer_test

import (
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// Every change message says which kind of sync found it (origin) and whose
// grant the calendar is read with (identityKey), in its body and its
// attributes (syncertest.Recorder checks they agree): the first full sync's
// history is "initial", an ordinary sync "incremental", a full sync after a
// 410 "resync", a purge of an unwatched calendar's mirror "purge".
func TestChangeOrigin(t *testing.T) {
	e := newEnv(t)
	s := e.syncer(nil)
	var ids []string
	for range 5 {
		ids = append(ids, e.insert("e").Id)
	}
	want := func(step, origin, identity string, n int) {
		t.Helper()
		cs := e.rec.Changes()
		if len(cs) != n {
			t.Fatalf("%s: %d change messages, want %d", step, len(cs), n)
		}
		for _, c := range cs {
			if c.Origin != origin || c.IdentityKey != identity || c.SchemaVersion != messages.ChangeSchemaVersion {
				t.Fatalf("%s: %s %s: origin %q identity %q schema %d; want %q %q %d", step, c.Change, c.EventID,
					c.Origin, c.IdentityKey, c.SchemaVersion, origin, identity, messages.ChangeSchemaVersion)
			}
		}
		e.rec.Reset()
	}
	e.mustNotify(s, messages.StateSync)
	want("first sync", messages.OriginInitial, "", 5)

	// Read with an identity's grant from now on (as a listing records it).
	const identity = "id_ann"
	if _, err := e.st.CalendarRef(e.key).Update(e.ctx, []firestore.Update{{Path: "enrolledBy", Value: identity}}); err != nil {
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

	if err := e.st.SetStatus(e.ctx, e.key, store.StatusUnwatched, "unenrolled", ""); err != nil {
		t.Fatal(err)
	}
	e.mustNotify(s, messages.StatePurge)
	want("purge", messages.OriginPurge, identity, 5)
}

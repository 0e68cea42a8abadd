package count

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The fleet benchmark's figures are only as good as these counters: each
// kind of Firestore operation is counted as Firestore bills it.
func TestFirestoreCounts(t *testing.T) {
	ctx := context.Background()
	host := testenv.Firestore(t)
	c := New()
	fs, err := c.Firestore(ctx, host, testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	col := fs.Collection("counted")
	check := func(step string, reads, writes, deletes int64) {
		t.Helper()
		s := c.Snapshot()
		if s.DocReads != reads || s.DocWrites != writes || s.DocDeletes != deletes {
			t.Fatalf("%s: %d reads, %d writes, %d deletes; want %d, %d, %d", step, s.DocReads, s.DocWrites, s.DocDeletes, reads, writes, deletes)
		}
	}
	for _, id := range []string{"a", "b"} {
		if _, err := col.Doc(id).Set(ctx, map[string]any{"x": 1, "id": id}); err != nil {
			t.Fatal(err)
		}
	}
	check("two sets", 0, 2, 0)
	if _, err := fs.GetAll(ctx, []*firestore.DocumentRef{col.Doc("a"), col.Doc("b"), col.Doc("missing")}); err != nil {
		t.Fatal(err)
	}
	check("GetAll of two documents and a missing one", 3, 2, 0)
	if docs, err := col.Where("x", "==", 1).Documents(ctx).GetAll(); err != nil || len(docs) != 2 {
		t.Fatalf("query: %d documents, %v", len(docs), err)
	}
	check("a query answering two documents", 5, 2, 0)
	if docs, err := col.Where("x", "==", 99).Documents(ctx).GetAll(); err != nil || len(docs) != 0 {
		t.Fatalf("empty query: %d documents, %v", len(docs), err)
	}
	check("a query answering nothing (billed one read)", 6, 2, 0)
	err = fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := tx.Get(col.Doc("a")); err != nil {
			return err
		}
		if err := tx.Update(col.Doc("a"), []firestore.Update{{Path: "x", Value: 2}}); err != nil {
			return err
		}
		return tx.Delete(col.Doc("b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	check("a transaction reading one, updating one, deleting one", 7, 3, 1)
	c.Reset()
	check("reset", 0, 0, 0)
}

func TestHandlerCounts(t *testing.T) {
	c := New()
	h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []string{"/", "/", "/fail"} {
		resp, err := http.Post(srv.URL+p, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Invocations != 3 || s.Answers[200] != 2 || s.Answers[503] != 1 {
		t.Fatalf("stats %+v: want 3 invocations (two 200, one 503); /stats itself not counted", s)
	}
	if s.BusySeconds <= 0 {
		t.Fatalf("no busy time: %+v", s)
	}
}

package testenv

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
)

var projectSeq atomic.Int64

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// ProjectID returns a project id unique to this test, so tests sharing one
// emulator never see each other's data.
func ProjectID(tb testing.TB) string {
	name := unsafeChars.ReplaceAllString(strings.ToLower(tb.Name()), "-")
	if len(name) > 20 {
		name = name[:20]
	}
	return fmt.Sprintf("t%d-%d-%s", time.Now().UnixNano()%1e6, projectSeq.Add(1), strings.Trim(name, "-"))
}

// ResetFirestore deletes every document of a project in the Firestore emulator.
func ResetFirestore(tb testing.TB, host, projectID string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("http://%s/emulator/v1/projects/%s/databases/(default)/documents", host, projectID), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("testenv: reset Firestore: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("testenv: reset Firestore: status %d", resp.StatusCode)
	}
}

// FirestoreClient starts the Firestore emulator if needed and returns a
// client of a project of this test's own, closed when the test ends.
func FirestoreClient(tb testing.TB) *firestore.Client {
	tb.Helper()
	Firestore(tb)
	fs, err := firestore.NewClient(context.Background(), ProjectID(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fs.Close() })
	return fs
}

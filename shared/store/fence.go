package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fencing. A lease alone cannot stop a holder that was paused past its
// lease (CPU throttling, GC, SIGSTOP) from writing when it resumes, after
// another worker took over and wrote newer data. So every write made under a
// lease is fenced: it carries the lease generation, checked by Firestore in
// the same commit as the write.
//
// The fence document calendars/{key}/syncstate/lease holds {gen, owner}. It
// is written only when a lease is taken (in the transaction that takes it),
// so its update time changes exactly then. Every batch written under a lease
// includes a no-op update of the fence document with the precondition
// "last updated at T", T being the update time the holder saw right after
// taking the lease. A no-op write leaves the update time as it is (Firestore's
// WriteResult: "if the write did not actually change the document, this will
// be the previous update_time"), so the holder's parallel batches never trip
// each other, while a takeover changes T and every later batch of the old
// holder fails as a whole with FailedPrecondition: ErrLeaseLost.
const docFence = "lease"

// Fence is what a lease holder's writes carry.
type Fence struct {
	Gen  int64     // the lease generation (calendars/{key}.leaseGen)
	Time time.Time // the fence document's update time when the lease was taken
}

func (s *Store) fenceRef(key string) *firestore.DocumentRef {
	return s.CalendarRef(key).Collection(CollSyncState).Doc(docFence)
}

// readFence reads the fence document after a lease was taken and checks it
// is still this lease's; ErrLeaseLost if another worker took over since.
func (s *Store) readFence(ctx context.Context, key string, l Lease, gen int64) (Fence, error) {
	snap, err := s.fenceRef(key).Get(ctx)
	if err != nil {
		return Fence{}, fmt.Errorf("read fence of %s: %w", key, wrapNotFound(err, "fence of calendar "+key))
	}
	if !fenceOf(snap, l.Owner, gen) {
		return Fence{}, ErrLeaseLost
	}
	return Fence{Gen: gen, Time: snap.UpdateTime}, nil
}

func fenceOf(snap *firestore.DocumentSnapshot, owner string, gen int64) bool {
	if !snap.Exists() {
		return false
	}
	g, _ := snap.DataAt("gen")
	o, _ := snap.DataAt("owner")
	return g == gen && o == owner
}

// holdsFence reports whether the fence document, as read, is still l's.
func holdsFence(snap *firestore.DocumentSnapshot, l Lease) bool {
	return fenceOf(snap, l.Owner, l.Fence.Gen) && snap.UpdateTime.Equal(l.Fence.Time)
}

// fenced starts a batch whose commit succeeds only while l's fence holds.
func (s *Store) fenced(key string, l Lease) (*firestore.WriteBatch, error) {
	if l.Fence.Gen == 0 || (l.Fence.Time.IsZero() && !s.Unfenced) {
		return nil, errors.New("store: write without a fenced lease")
	}
	b := s.Client.Batch() //lint:ignore SA1019 batches of ≤500 are the fastest bulk write (see events.go)
	if !s.Unfenced {
		b.Update(s.fenceRef(key), []firestore.Update{{Path: "gen", Value: l.Fence.Gen}}, firestore.LastUpdateTime(l.Fence.Time))
	}
	return b, nil
}

// commitFenced commits a fenced batch; a failed fence is ErrLeaseLost.
func commitFenced(ctx context.Context, b *firestore.WriteBatch) error {
	_, err := b.Commit(ctx)
	if status.Code(err) == codes.FailedPrecondition {
		return fmt.Errorf("%w (fence moved: another worker took the lease): %v", ErrLeaseLost, err)
	}
	return err
}

// commitIdempotent builds and commits a fenced batch that may be applied
// twice with the same result (checkpoints, announcing markers): while its
// outcome is unknown it is committed again, so it ends known, applied or
// refused (ErrLeaseLost). A few tries: the caller's own retries take over.
func (s *Store) commitIdempotent(ctx context.Context, key string, l Lease, add func(b *firestore.WriteBatch)) error {
	return retryAmbiguous(ctx, func() error {
		b, err := s.fenced(key, l)
		if err != nil {
			return err
		}
		add(b)
		return commitFenced(ctx, b)
	})
}

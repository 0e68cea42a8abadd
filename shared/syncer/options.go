package syncer

import "github.com/calsync/calsync/shared/lifecycle"

// Options returns the options s runs with, defaults filled: how a process
// built its Syncer, for tests that compare it with production's.
func (s *Syncer) Options() Options { return s.o }

// Settings is o without its clients, hooks and instance name: what two
// Syncers built from the same config have in common. Of the lifecycle owner
// only its 404 policy is kept.
func (o Options) Settings() Options {
	if o.Lifecycle != nil {
		o.Lifecycle = &lifecycle.Owner{NotFound: o.Lifecycle.NotFound}
	}
	o.Store, o.Services, o.Publisher, o.Requests, o.Logger = nil, nil, nil, nil, nil
	o.Instance, o.Now, o.OnSync = "", nil, nil
	return o
}

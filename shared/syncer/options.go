package syncer

// Options returns the options s runs with, defaults filled: how a process
// built its Syncer, for tests that compare it with production's.
func (s *Syncer) Options() Options { return s.o }

// Settings is o without its clients, hooks and instance name: what two
// Syncers built from the same config have in common.
func (o Options) Settings() Options {
	o.Store, o.Services, o.Publisher, o.Requests, o.Revoker, o.Logger = nil, nil, nil, nil, nil, nil
	o.Instance, o.Now, o.OnSync = "", nil, nil
	return o
}

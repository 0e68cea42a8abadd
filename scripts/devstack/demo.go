package main

import (
	"context"
	"io"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
)

type demoOptions struct {
	events int
	every  time.Duration
}

func runDemo(ctx context.Context, st *stack.Stack, o demoOptions, w io.Writer) error { return nil }

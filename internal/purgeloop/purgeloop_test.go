package purgeloop

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRun drives three purges: one that fails, which is reported; one
// that succeeds; and one cut short by the loop's context, whose error is
// not reported. Run then returns.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broken := errors.New("disk full")
	calls := 0
	purge := func(ctx context.Context) (int, error) {
		calls++
		switch calls {
		case 1:
			return 0, broken
		case 2:
			return 3, nil
		default:
			cancel()
			return 0, ctx.Err()
		}
	}
	var reported []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, time.Millisecond, purge, func(err error) { reported = append(reported, err) })
	}()
	<-done
	if calls < 3 {
		t.Fatalf("Run returned after %d purges, before its context ended", calls)
	}
	if len(reported) != 1 || reported[0] != broken {
		t.Fatalf("reported %v, want only the failure of the first purge", reported)
	}
}

// TestRunStopsAtOnce returns without purging when the context is done
// before the first tick.
func TestRunStopsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Run(ctx, time.Hour, func(context.Context) (int64, error) {
		t.Error("purged after the context ended")
		return 0, nil
	}, func(err error) { t.Errorf("reported %v", err) })
}

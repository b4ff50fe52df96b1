package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const killDirEnv = "CUSTOS_WAL_KILL_DIR"

// killPayload is the payload the helper writes under seq: 1 byte to 384 KiB,
// so frames straddle pages, the write buffer and write calls, and a kill
// can tear them.
func killPayload(seq uint64) []byte {
	return payloadOfSize(seq, 1+int(seq*104729%(384<<10)))
}

// TestHelperWriter is not a test: TestKill9 runs the test binary again with
// only this function selected and killDirEnv set. It appends and syncs in a
// loop as the store's committer would, several frames per Sync, and prints
// "ack FIRST LAST" once Sync has returned for frames FIRST..LAST.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(killDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9")
	}
	fail := func(err error) {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	l, err := Open(dir, Options{SegmentSize: 2 << 20})
	if err != nil {
		fail(err)
	}
	fmt.Printf("opened next=%d repaired=%d\n", l.NextSeq(), l.Repaired())
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for {
		first := l.NextSeq()
		last := first
		for range 1 + rng.IntN(4) {
			seq, err := l.Append(killPayload(l.NextSeq()))
			if err != nil {
				fail(err)
			}
			last = seq
			// A committer gathers a batch between appends; meanwhile
			// bufio has written out part of the frames, so a kill
			// here leaves a torn frame for Open to repair.
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		}
		if err := l.Sync(); err != nil {
			fail(err)
		}
		// os.Stdout is unbuffered: the line is out once Printf returns.
		fmt.Printf("ack %d %d\n", first, last)
	}
}

// TestKill9 SIGKILLs a writing process at random moments and checks that
// every frame it was told is durable comes back intact, with dense seqs.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for a few seconds")
	}
	dir := t.TempDir()
	var acked uint64 // highest seq any child reported durable
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for round := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(), killDirEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string)
		go func() {
			var got []string
			sc := bufio.NewScanner(out)
			for sc.Scan() { // a line cut short by the kill has no newline and is dropped
				got = append(got, sc.Text())
			}
			lines <- got
		}()
		time.Sleep(time.Duration(50+rng.IntN(251)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := <-lines
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die by SIGKILL: %v; output:\n%s", round, err, strings.Join(got, "\n"))
		}

		roundAcks := 0
		for _, line := range got {
			var first, last uint64
			switch {
			case strings.HasPrefix(line, "error"):
				t.Fatalf("round %d: child: %s", round, line)
			case strings.HasPrefix(line, "ack"):
				if _, err := fmt.Sscanf(line, "ack %d %d", &first, &last); err != nil {
					t.Fatalf("round %d: bad line %q", round, line)
				}
				if first > last || first <= acked {
					t.Fatalf("round %d: ack %d..%d overlaps earlier acks through %d", round, first, last, acked)
				}
				acked = max(acked, last)
				roundAcks++
			}
		}

		l, err := Open(dir, Options{SegmentSize: 2 << 20})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		want := uint64(1)
		err = l.Replay(1, func(seq uint64, p []byte) error {
			if seq != want {
				return fmt.Errorf("seq %d follows %d", seq, want-1)
			}
			if !bytes.Equal(p, killPayload(seq)) {
				return fmt.Errorf("seq %d: payload differs", seq)
			}
			want++
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: Replay: %v", round, err)
		}
		if want-1 < acked {
			t.Fatalf("round %d: log ends at seq %d but seq %d was acknowledged", round, want-1, acked)
		}
		if l.NextSeq() != want {
			t.Fatalf("round %d: NextSeq = %d, want %d", round, l.NextSeq(), want)
		}
		t.Logf("round %d: %d acks, acknowledged through %d, log through %d, repaired %d bytes",
			round, roundAcks, acked, want-1, l.Repaired())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if acked == 0 {
		t.Fatal("no child acknowledged anything; the test proved nothing")
	}
}

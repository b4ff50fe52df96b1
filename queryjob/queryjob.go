// Package queryjob runs asynchronous audit log queries, shaped like
// Microsoft Graph's auditLogQuery so scripts written for Graph port to
// custos: a query is created, runs in the background, and its records are
// read page by page once it has succeeded.
//
// A job's result set is fixed when it completes, as Graph's is: matching
// records are written to a file in the job's directory while it runs, so
// records arriving later do not change the pages, and memory stays flat
// whatever the size. Jobs survive a restart (unfinished ones run again from
// the start) and are deleted 30 days after creation.
package queryjob

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/auth"
	"github.com/custos-audit/custos/durable"
	"github.com/custos-audit/custos/store"
)

// Status of a job, with Graph's values.
type Status string

const (
	NotStarted Status = "notStarted"
	Running    Status = "running"
	Succeeded  Status = "succeeded"
	Failed     Status = "failed"
	Cancelled  Status = "cancelled"
)

// Reader is the part of the store a job reads.
type Reader interface {
	Records(ctx context.Context, tenant string, q store.Query, fn func(*audit.Record) error) error
}

// Job is a query and its state.
type Job struct {
	ID          string      `json:"id"`
	Tenant      string      `json:"tenant"`
	DisplayName string      `json:"displayName"`
	Query       store.Query `json:"query"`
	Filters     Filters     `json:"filters"` // as asked, for display
	Status      Status      `json:"status"`
	Error       string      `json:"error,omitempty"`
	Records     int64       `json:"records"` // written so far, or in all once succeeded
	CreatedBy   string      `json:"createdBy"`
	Created     time.Time   `json:"created"`
	Started     time.Time   `json:"started,omitzero"`
	Finished    time.Time   `json:"finished,omitzero"`
}

// Filters are a job's filters as the client gave them (Graph's names).
type Filters struct {
	Start       time.Time `json:"filterStartDateTime"`
	End         time.Time `json:"filterEndDateTime"`
	RecordTypes []string  `json:"recordTypeFilters,omitempty"`
	Keyword     string    `json:"keywordFilter,omitempty"`
	Services    []string  `json:"serviceFilters,omitempty"`
	Operations  []string  `json:"operationFilters,omitempty"`
	Users       []string  `json:"userPrincipalNameFilters,omitempty"`
	IPs         []string  `json:"ipAddressFilters,omitempty"`
	ObjectIDs   []string  `json:"objectIdFilters,omitempty"`
}

// Limits.
const (
	// MaxPending is how many unfinished jobs a tenant may have.
	MaxPending = 10
	// Keep is how long a job and its results are kept after creation.
	Keep = 30 * 24 * time.Hour
	// indexEvery is how many records apart the offset index points, so a
	// page starts after reading at most this many lines.
	indexEvery = 1000
)

// Errors.
var (
	ErrNotFound = errors.New("no such query")
	ErrBusy     = fmt.Errorf("a tenant may have at most %d unfinished queries", MaxPending)
	ErrNotReady = errors.New("query has not succeeded")
	ErrFinished = errors.New("query has already finished")
	ErrBadToken = errors.New("invalid page token")
)

// Config configures a Manager.
type Config struct {
	Dir     string // where jobs live
	Reader  Reader
	Workers int // jobs running at once (default 2)
	Now     func() time.Time
	Logger  *slog.Logger
}

// Manager owns the jobs.
type Manager struct {
	cfg   Config
	queue chan *job
	stop  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	jobs map[key]*job
}

type key struct{ tenant, id string }

type job struct {
	Job
	cancel context.CancelFunc // set while running
}

// Open loads the jobs under cfg.Dir, requeues the unfinished ones, removes
// expired ones, and starts the workers.
func Open(cfg Config) (*Manager, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("queryjob: %w", err)
	}
	m := &Manager{cfg: cfg, queue: make(chan *job, 1<<16), stop: make(chan struct{}), jobs: map[key]*job{}}
	metas, _ := filepath.Glob(filepath.Join(cfg.Dir, "*", "*.json"))
	var pending []*job
	for _, p := range metas {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("queryjob: %w", err)
		}
		var j job
		if err := json.Unmarshal(b, &j.Job); err != nil {
			return nil, fmt.Errorf("queryjob: %s: %w", p, err)
		}
		if j.ID == "" || filepath.Base(p) != j.ID+".json" || filepath.Base(filepath.Dir(p)) != j.Tenant {
			return nil, fmt.Errorf("queryjob: %s does not describe itself", p)
		}
		m.jobs[key{j.Tenant, j.ID}] = &j
		if j.Status == NotStarted || j.Status == Running {
			// Interrupted: run again from the start.
			j.Status, j.Records, j.Started = NotStarted, 0, time.Time{}
			os.Remove(m.resultPath(j.Tenant, j.ID))
			os.Remove(m.indexPath(j.Tenant, j.ID))
			pending = append(pending, &j)
		}
	}
	slices.SortFunc(pending, func(a, b *job) int { return a.Created.Compare(b.Created) })
	for _, j := range pending {
		m.queue <- j
	}
	m.Expire()
	for range cfg.Workers {
		m.wg.Add(1)
		go m.worker()
	}
	m.wg.Add(1)
	go m.janitor()
	return m, nil
}

// Close stops the workers; running jobs are interrupted and run again at
// the next Open.
func (m *Manager) Close() {
	close(m.stop)
	m.mu.Lock()
	for _, j := range m.jobs {
		if j.cancel != nil {
			j.cancel()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Manager) dir(tenant string) string          { return filepath.Join(m.cfg.Dir, tenant) }
func (m *Manager) metaPath(tenant, id string) string { return filepath.Join(m.dir(tenant), id+".json") }
func (m *Manager) resultPath(tenant, id string) string {
	return filepath.Join(m.dir(tenant), id+".ndjson")
}
func (m *Manager) indexPath(tenant, id string) string { return filepath.Join(m.dir(tenant), id+".idx") }

// save writes j's metadata; callers hold m.mu or own j alone.
func (m *Manager) save(j *Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.dir(j.Tenant), 0o750); err != nil {
		return err
	}
	return durable.WriteFile(m.metaPath(j.Tenant, j.ID), b, 0o600)
}

// Create queues a new job for tenant. The tenant id must be valid (the API
// checked it), which keeps it a safe directory name.
func (m *Manager) Create(tenant, displayName string, f Filters, q store.Query, by string) (Job, error) {
	if !auth.ValidTenantID(tenant) {
		return Job{}, fmt.Errorf("queryjob: invalid tenant %q", tenant)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pending := 0
	for k, j := range m.jobs {
		if k.tenant == tenant && (j.Status == NotStarted || j.Status == Running) {
			pending++
		}
	}
	if pending >= MaxPending {
		return Job{}, ErrBusy
	}
	var b [12]byte
	rand.Read(b[:])
	j := &job{Job: Job{ID: hex.EncodeToString(b[:]), Tenant: tenant, DisplayName: displayName, Query: q, Filters: f,
		Status: NotStarted, CreatedBy: by, Created: m.cfg.Now().UTC()}}
	if err := m.save(&j.Job); err != nil {
		return Job{}, fmt.Errorf("queryjob: %w", err)
	}
	m.jobs[key{tenant, j.ID}] = j
	select {
	case m.queue <- j:
	default:
		// The queue is sized far beyond MaxPending × tenants in practice;
		// a job that does not fit still runs after the next restart.
		m.cfg.Logger.Warn("query job queue full; the job waits for a restart", "tenant", tenant, "id", j.ID)
	}
	return j.Job, nil
}

// Get returns a tenant's job.
func (m *Manager) Get(tenant, id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[key{tenant, id}]
	if !ok {
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return j.Job, nil
}

// List returns a tenant's jobs, newest first.
func (m *Manager) List(tenant string) []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Job
	for k, j := range m.jobs {
		if k.tenant == tenant {
			out = append(out, j.Job)
		}
	}
	slices.SortFunc(out, func(a, b Job) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Cancel stops an unfinished job; its partial results are deleted.
func (m *Manager) Cancel(tenant, id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[key{tenant, id}]
	if !ok {
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if j.Status != NotStarted && j.Status != Running {
		return j.Job, fmt.Errorf("%w (%s)", ErrFinished, j.Status)
	}
	if j.cancel != nil {
		j.cancel() // the worker sees the status and cleans up
	}
	j.Status, j.Finished = Cancelled, m.cfg.Now().UTC()
	os.Remove(m.resultPath(tenant, id))
	os.Remove(m.indexPath(tenant, id))
	if err := m.save(&j.Job); err != nil {
		return j.Job, fmt.Errorf("queryjob: %w", err)
	}
	return j.Job, nil
}

// Delete cancels a job if it runs and removes it and its results.
func (m *Manager) Delete(tenant, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[key{tenant, id}]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if j.cancel != nil {
		j.cancel()
	}
	j.Status = Cancelled // a worker holding it must not write it back
	m.remove(tenant, id)
	return nil
}

// remove deletes a job's files and entry; callers hold m.mu.
func (m *Manager) remove(tenant, id string) {
	os.Remove(m.resultPath(tenant, id))
	os.Remove(m.indexPath(tenant, id))
	os.Remove(m.metaPath(tenant, id))
	delete(m.jobs, key{tenant, id})
}

// Expire deletes the jobs created more than Keep ago.
func (m *Manager) Expire() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	cutoff := m.cfg.Now().Add(-Keep)
	n := 0
	for k, j := range m.jobs {
		if j.Created.Before(cutoff) {
			if j.cancel != nil {
				j.cancel()
			}
			j.Status = Cancelled
			m.remove(k.tenant, k.id)
			n++
		}
	}
	return n
}

func (m *Manager) janitor() {
	defer m.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if n := m.Expire(); n > 0 {
				m.cfg.Logger.Info("deleted expired query jobs", "jobs", n)
			}
		}
	}
}

func (m *Manager) worker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case j := <-m.queue:
			m.run(j)
		}
	}
}

// run executes one job unless it was cancelled or deleted while queued.
func (m *Manager) run(j *job) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.mu.Lock()
	if j.Status != NotStarted || m.jobs[key{j.Tenant, j.ID}] != j {
		m.mu.Unlock()
		return
	}
	j.Status, j.Started, j.cancel = Running, m.cfg.Now().UTC(), cancel
	snap := j.Job
	err := m.save(&snap)
	m.mu.Unlock()
	if err == nil {
		err = m.write(ctx, j)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	j.cancel = nil
	if j.Status != Running || m.jobs[key{j.Tenant, j.ID}] != j {
		return // cancelled or deleted meanwhile; they cleaned up
	}
	select {
	case <-m.stop:
		return // shutting down: left Running, so the next Open runs it again
	default:
	}
	j.Finished = m.cfg.Now().UTC()
	if err != nil {
		j.Status, j.Error = Failed, err.Error()
		os.Remove(m.resultPath(j.Tenant, j.ID))
		os.Remove(m.indexPath(j.Tenant, j.ID))
		m.cfg.Logger.Error("query job failed", "tenant", j.Tenant, "id", j.ID, "err", err)
	} else {
		j.Status = Succeeded
	}
	if err := m.save(&j.Job); err != nil {
		m.cfg.Logger.Error("saving query job", "tenant", j.Tenant, "id", j.ID, "err", err)
	}
}

// write streams the job's records into its result file and offset index.
func (m *Manager) write(ctx context.Context, j *job) error {
	f, err := os.Create(m.resultPath(j.Tenant, j.ID))
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	var index []byte
	var off, n int64
	q := j.Query
	q.Slim = true
	err = m.cfg.Reader.Records(ctx, j.Tenant, q, func(r *audit.Record) error {
		if n%indexEvery == 0 {
			index = binary.LittleEndian.AppendUint64(index, uint64(off))
		}
		bw.Write(r.Raw)
		bw.WriteByte('\n')
		off += int64(len(r.Raw)) + 1
		n++
		if n%indexEvery == 0 {
			m.mu.Lock()
			j.Records = n
			m.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := durable.WriteFile(m.indexPath(j.Tenant, j.ID), index, 0o600); err != nil {
		return err
	}
	m.mu.Lock()
	j.Records = n
	m.mu.Unlock()
	return nil
}

// Page returns up to top raw records of a succeeded job from position
// skip, and the position of the next page (-1 at the end).
func (m *Manager) Page(tenant, id string, skip int64, top int) ([][]byte, int64, error) {
	j, err := m.Get(tenant, id)
	if err != nil {
		return nil, 0, err
	}
	if j.Status != Succeeded {
		return nil, 0, fmt.Errorf("%w: it is %s", ErrNotReady, j.Status)
	}
	if skip < 0 || skip > j.Records {
		return nil, 0, ErrBadToken
	}
	if skip == j.Records {
		return nil, -1, nil
	}
	index, err := os.ReadFile(m.indexPath(tenant, id))
	if err != nil {
		return nil, 0, fmt.Errorf("queryjob: %w", err)
	}
	slot := skip / indexEvery
	if int64(len(index)) < (slot+1)*8 {
		return nil, 0, fmt.Errorf("queryjob: index of %s is short", id)
	}
	f, err := os.Open(m.resultPath(tenant, id))
	if err != nil {
		return nil, 0, fmt.Errorf("queryjob: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(int64(binary.LittleEndian.Uint64(index[slot*8:])), io.SeekStart); err != nil {
		return nil, 0, err
	}
	br := bufio.NewReaderSize(f, 256<<10)
	for i := slot * indexEvery; i < skip; i++ {
		for { // a record may be longer than the buffer
			_, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				return nil, 0, fmt.Errorf("queryjob: skip in %s: %w", id, err)
			}
			break
		}
	}
	var out [][]byte
	for len(out) < top && skip+int64(len(out)) < j.Records {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, 0, fmt.Errorf("queryjob: read %s: %w", id, err)
		}
		out = append(out, line[:len(line)-1])
	}
	next := skip + int64(len(out))
	if next >= j.Records {
		next = -1
	}
	return out, next, nil
}

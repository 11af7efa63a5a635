package main

import (
	"bufio"
	"context"
	"errors"

	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The chaos suite's own infrastructure: a PostgreSQL and a Kafka broker that
// scripts/devstack.sh starts in a directory of the run's own (DEVSTACK_DIR),
// so that killing them never touches the dev stack that `make test` shares;
// a small loop-mounted filesystem holding the run's database (its tablespace)
// that can be filled; and a TCP proxy per daemon in front of PostgreSQL that
// can be severed.

// chaosInfra is the run's PostgreSQL and broker.
type chaosInfra struct {
	tb      testing.TB
	dir     string // DEVSTACK_DIR
	repo    string
	adminDB string // the cluster's postgres database
	dbURL   string // the run's database, in the small tablespace
	pgPort  string
	brokers []string
	mnt     string // the small filesystem
	pgUser  string
	log     io.Writer

	mu sync.Mutex // the log
}

// startChaosInfra starts the run's own PostgreSQL and broker with
// scripts/devstack.sh in a fresh directory, mounts a small filesystem for the
// run's database, creates that database in a tablespace on it, and tears it
// all down when the test ends, whatever happens.
func startChaosInfra(tb testing.TB, log io.Writer, diskMiB int) *chaosInfra {
	tb.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	// A short path: PostgreSQL's unix socket lives under it (108 bytes at most).
	dir, err := os.MkdirTemp("/tmp", "chaos-")
	if err != nil {
		tb.Fatal(err)
	}
	inf := &chaosInfra{tb: tb, dir: dir, repo: repo, log: log}
	tb.Cleanup(inf.down)
	if err := inf.devstack("up"); err != nil {
		tb.Fatalf("the chaos run's own stack did not start: %v", err)
	}
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "export DATABASE_URL="); ok {
			inf.adminDB = v
		}
		if v, ok := strings.CutPrefix(line, "export KAFKA_BROKERS="); ok {
			inf.brokers = strings.Split(v, ",")
		}
	}
	if inf.adminDB == "" || len(inf.brokers) == 0 {
		tb.Fatalf("devstack.sh wrote no DATABASE_URL or KAFKA_BROKERS to %s/env:\n%s", dir, env)
	}
	u, err := url.Parse(inf.adminDB)
	if err != nil {
		tb.Fatal(err)
	}
	inf.pgPort = u.Port()
	st, err := os.Stat(filepath.Join(dir, "pg", "data"))
	if err != nil {
		tb.Fatal(err)
	}
	inf.pgUser = strconv.FormatUint(uint64(st.Sys().(*syscall.Stat_t).Uid), 10)
	inf.mountDisk(diskMiB)
	inf.createDatabase()
	return inf
}

// devstack runs scripts/devstack.sh CMD on the run's directory, without the
// dev stack's DATABASE_URL and KAFKA_BROKERS (devstack.sh would use those
// instead of starting its own).
func (inf *chaosInfra) devstack(args ...string) error {
	c := exec.Command(filepath.Join(inf.repo, "scripts", "devstack.sh"), args...)
	c.Dir = inf.repo
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "KAFKA_BROKERS=") || strings.HasPrefix(kv, "DEVSTACK_DIR=") {
			continue
		}
		c.Env = append(c.Env, kv)
	}
	c.Env = append(c.Env, "DEVSTACK_DIR="+inf.dir, "DEVSTACK_KEEP_PORTS=1")
	out, err := c.CombinedOutput()
	inf.mu.Lock()
	fmt.Fprintf(inf.log, "%s devstack.sh %s: %s", time.Now().UTC().Format("15:04:05.000"), strings.Join(args, " "), out)
	inf.mu.Unlock()
	if err != nil {
		return fmt.Errorf("devstack.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (inf *chaosInfra) down() {
	// PostgreSQL's log goes with the others (it says what the faults did).
	if b, err := os.ReadFile(filepath.Join(inf.dir, "pg", "postgres.log")); err == nil {
		fmt.Fprintf(inf.log, "\n--- postgres.log ---\n%s", b)
	}
	if inf.mnt != "" {
		// PostgreSQL first: it holds files on the mount.
		_ = inf.devstack("down")
		if out, err := exec.Command("umount", "-l", inf.mnt).CombinedOutput(); err != nil {
			inf.tb.Errorf("umount %s: %v: %s", inf.mnt, err, out)
		}
	} else {
		_ = inf.devstack("down")
	}
	_ = os.RemoveAll(inf.dir)
}

// mountDisk makes the small filesystem: an ext4 image of diskMiB, sparse,
// loop-mounted, with no blocks reserved for root. Mounting needs root; a
// machine that refuses it fails the run saying so.
func (inf *chaosInfra) mountDisk(diskMiB int) {
	img := filepath.Join(inf.dir, "disk.img")
	mnt := filepath.Join(inf.dir, "disk")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		inf.tb.Fatal(err)
	}
	steps := [][]string{
		{"truncate", "-s", fmt.Sprintf("%dM", diskMiB), img},
		{"mkfs.ext4", "-q", "-F", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			inf.tb.Fatalf("the out-of-disk fault needs a small filesystem of its own: %s: %v: %s (run as root on a machine that allows loop mounts)", strings.Join(s, " "), err, out)
		}
	}
	inf.mnt = mnt
	ts := filepath.Join(mnt, "ts")
	if err := os.Mkdir(ts, 0o700); err != nil {
		inf.tb.Fatal(err)
	}
	uid, _ := strconv.Atoi(inf.pgUser)
	if err := os.Chown(ts, uid, -1); err != nil {
		inf.tb.Fatal(err)
	}
}

// createDatabase creates the run's database in a tablespace on the small
// filesystem: its tables and indexes fill it, not the WAL.
func (inf *chaosInfra) createDatabase() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, inf.adminDB)
	if err != nil {
		inf.tb.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		fmt.Sprintf(`CREATE TABLESPACE chaos LOCATION '%s'`, filepath.Join(inf.mnt, "ts")),
		`CREATE DATABASE chaos TABLESPACE chaos`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			inf.tb.Fatalf("%s: %v", q, err)
		}
	}
	inf.dbURL = strings.Replace(inf.adminDB, "/postgres?", "/chaos?", 1)
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// killPostgres SIGKILLs the postmaster and waits until its backends, which
// notice its death on their own, are gone too: a new postmaster refuses to
// start while they hold the old shared memory (and devstack.sh would then
// try another port, which the daemons do not know).
func (inf *chaosInfra) killPostgres() error {
	pid, err := readPid(filepath.Join(inf.dir, "pg", "data", "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("postmaster pid: %w", err)
	}
	children := childrenOf(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range append(children, pid) {
		for alive(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("PostgreSQL process %d still runs 30s after its postmaster was killed", c)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// killBroker SIGKILLs the broker's JVM.
func (inf *chaosInfra) killBroker() error {
	pid, err := readPid(filepath.Join(inf.dir, "kafka", "pid"))
	if err != nil {
		return fmt.Errorf("broker pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the broker (pid %d) still runs 30s after SIGKILL", pid)
		}
	}
	return nil
}

// restart starts server ("pg" or "kafka") again, on the same port (the
// daemons keep their addresses: DEVSTACK_KEEP_PORTS); a run whose port was
// taken meanwhile cannot go on.
func (inf *chaosInfra) restart(server string) error {
	// devstack.sh waits 120 s for a broker to serve; on a machine at load
	// 50 and more that was not always enough: three tries.
	var err error
	for try := 0; try < 3; try++ {
		if err = inf.devstack("up", server); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	want := inf.pgPort
	if server == "kafka" {
		_, want, _ = strings.Cut(inf.brokers[0], ":")
	}
	got, err := os.ReadFile(filepath.Join(inf.dir, server, "port"))
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(got)) != want {
		return fmt.Errorf("%s came back on port %s, not %s", server, strings.TrimSpace(string(got)), want)
	}
	return nil
}

// fillDisk takes every free block of the small filesystem (fallocate) and
// returns a func that gives them back.
func (inf *chaosInfra) fillDisk() (func() error, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(inf.mnt, &st); err != nil {
		return nil, err
	}
	free := int64(st.Bavail) * st.Bsize
	f := filepath.Join(inf.mnt, "filler")
	// fallocate takes the free space at once; if blocks went to the database
	// meanwhile it fails with ENOSPC, having taken what it could. The writes
	// below take what is left, to the last block.
	if out, err := exec.Command("fallocate", "-l", strconv.FormatInt(free, 10), f).CombinedOutput(); err != nil && !strings.Contains(string(out), "No space") {
		return nil, fmt.Errorf("fallocate: %w: %s", err, out)
	}
	rest := filepath.Join(inf.mnt, "filler-rest")
	if err := writeUntilFull(rest, int64(st.Blocks)); err != nil {
		_ = os.Remove(f)
		return nil, err
	}
	return func() error { return errors.Join(os.Remove(f), os.Remove(rest)) }, nil
}

func writeOK(w io.Writer, b []byte) bool {
	_, err := w.Write(b)
	return err == nil
}

// writeUntilFull writes blocks of 4 KiB to path until the filesystem says it
// is full (or n blocks).
func writeUntilFull(path string, n int64) error {
	w, err := os.Create(path)
	if err != nil {
		return err
	}
	defer w.Close()
	chunk := make([]byte, 4096)
	// Until a write fails: ENOSPC is what we are after.
	for i := int64(0); i < n && writeOK(w, chunk); i++ {
	}
	return nil
}

// diskUse says how full the small filesystem is.
func (inf *chaosInfra) diskUse() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(inf.mnt, &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d MiB free of %d MiB", int64(st.Bavail)*st.Bsize>>20, int64(st.Blocks)*st.Bsize>>20)
}

// pgLogHas counts the lines of the run's PostgreSQL log that contain s.
func (inf *chaosInfra) pgLogHas(s string) int {
	f, err := os.Open(filepath.Join(inf.dir, "pg", "postgres.log"))
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// severProxy is a loopback TCP proxy in front of PostgreSQL for one daemon.
// Severed, it closes every connection it carries and closes each new one at
// once: the daemon is cut off from the database, and from nothing else.
type severProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	severed bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newSeverProxy(tb testing.TB, target string) *severProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &severProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

func (p *severProxy) addr() string { return p.ln.Addr().String() }

func (p *severProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.severed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *severProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.severed {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

func (p *severProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// sever cuts (true) or restores (false) the daemon's way to the database.
func (p *severProxy) sever(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.severed = on
	if on {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *severProxy) close() {
	p.ln.Close()
	p.sever(true)
	p.wg.Wait()
}

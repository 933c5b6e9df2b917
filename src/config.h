/*
 * config: libconfig file -> validated, immutable settings.
 *
 * Reads and checks one configuration file.  Depends on no other tls-echod
 * module and never logs: every problem comes back as one message of the form
 * "FILE:LINE: SETTING: problem" in the caller's buffer.  TLS material is only
 * checked for readability here; parsing and matching keys is tlsctx's job.
 */
#ifndef TLS_ECHOD_CONFIG_H
#define TLS_ECHOD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_DEFAULT_PATH "/etc/tls-echod/tls-echod.conf"
#define CFG_NAME_MAX 64
#define CFG_BANNER_MAX 4096

enum cfg_mode { CFG_MODE_ECHO, CFG_MODE_RELAY, CFG_MODE_WHOAMI };
enum cfg_crl_stale { CFG_CRL_STALE_WARN, CFG_CRL_STALE_REFUSE };
enum cfg_resumption {
	CFG_RESUME_OFF,        /* no tickets */
	CFG_RESUME_PSK_DHE_KE, /* tickets; TLS 1.3 resumes with a fresh ECDHE */
	CFG_RESUME_PSK_KE,     /* tickets; TLS 1.3 also without ECDHE (no PFS) */
};

/* A list of strings as written, with where (for messages). */
struct cfg_strs {
	char **v;
	size_t n;
	int line; /* 0 if absent */
};

#define CFG_SPKI_LEN 32

/* Who may in, after the certificate verified: any rule that matches. */
struct cfg_allow {
	struct cfg_strs cn, ou, dns, uri, email;
	uint8_t (*spki)[CFG_SPKI_LEN]; /* SHA-256 of SubjectPublicKeyInfo */
	size_t nspki;
};
enum cfg_proxy { CFG_PROXY_OFF, CFG_PROXY_V1, CFG_PROXY_V2 };
enum cfg_log { CFG_LOG_AUTO, CFG_LOG_JOURNAL, CFG_LOG_STDERR, CFG_LOG_JSON };

/* Which file changes reload the configuration by themselves. */
enum cfg_watch {
	CFG_WATCH_OFF,
	CFG_WATCH_TLS, /* certificates, keys, CAs, CRLs, ticket_key_file */
	CFG_WATCH_ALL, /* ... and the configuration file and its @includes */
};

/* A file setting: resolved path plus where it was written, for messages. */
struct cfg_file {
	char *path;    /* absolute */
	char *setting; /* e.g. "listeners[0].tls.cert" */
	char *file;    /* config file (or @include) it was set in */
	int line;      /* line in that file, 0 if unknown */
};

/* Where a relay listener sends its clients' bytes. */
struct cfg_backend {
	char *address; /* as written: "host:port", "[v6]:port", "unix:/path" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned connect_timeout_ms;
	enum cfg_proxy proxy;
	bool tls;          /* TLS to the backend, verified against ca */
	struct cfg_file ca;   /* required with tls */
	struct cfg_file cert; /* optional client certificate (path NULL) */
	struct cfg_file key;
	char *server_name; /* name (or IP) the backend certificate must hold */
	int line;
};

struct cfg_listener {
	char *name;
	char *listen; /* as written, e.g. "127.0.0.1:8443" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum cfg_mode mode;
	char *banner; /* NULL: none */
	size_t banner_len;
	struct cfg_file cert, key, ca;
	struct cfg_file *crl;        /* tls.crl: zero or more files */
	size_t ncrl;
	enum cfg_crl_stale crl_stale;
	bool verify_optional;        /* tls.verify_client = "optional" */
	unsigned verify_depth;       /* intermediates allowed below a CA */
	struct cfg_strs ciphers;     /* tls.ciphers (IANA names), n 0: ours */
	struct cfg_strs curves;      /* tls.curves, n 0: ours */
	int min_version;             /* 12 or 13 */
	int min_version_line;
	enum cfg_resumption resumption;
	unsigned record_size;        /* largest record we send (bytes) */
	char *setting_tls;           /* "listeners[0].tls", for messages */
	struct cfg_allow allow;
	unsigned handshake_timeout_ms;
	unsigned idle_timeout_ms; /* 0: no idle timeout */
	unsigned max_connections; /* per worker */
	unsigned max_per_identity; /* per client identity, all workers; 0: off */
	unsigned linger_timeout_ms; /* relay: after one side closed */
	struct cfg_backend backend; /* mode relay only */
	int line;                 /* line of the listener's group */
	char *setting;            /* e.g. "listeners[0]" */
	char *file;               /* config file (or @include) it is in */
};

struct cfg {
	char *path;    /* the file as given */
	unsigned workers;
	char *user;  /* NULL: started as root, tls-echod or nobody */
	char *group; /* NULL: the (default) user's primary group */
	int user_line, group_line;
	enum cfg_log log;
	enum cfg_watch watch;
	int watch_line;
	struct cfg_strs includes; /* @include files read (absolute paths) */
	unsigned expiry_warn_days;    /* warn when a certificate expires sooner */
	unsigned ticket_lifetime_s;   /* session ticket key period */
	unsigned ticket_max_age_s;    /* tickets stop resuming this long after
	                                 the client's full handshake */
	struct cfg_file ticket_key_file; /* path NULL: keys made at start */
	unsigned shutdown_timeout_ms; /* SIGTERM: time live connections get */
	unsigned drain_timeout_ms;    /* reload: time old workers get */
	unsigned worker_connections;  /* all listeners together, per worker */
	unsigned log_refusals_per_s;  /* logged in full per listener, reason,
	                                 worker and second; the rest counted */
	bool sandbox;                 /* workers run under a seccomp filter */
	char *metrics;                /* metrics endpoint as written ("host:port"
	                                 or "unix:/path"); NULL: none */
	struct sockaddr_storage metrics_addr;
	socklen_t metrics_addrlen;
	int metrics_line;
	struct cfg_listener *listeners;
	size_t nlisteners;
};

/**
 * cfg_load(path, err, errlen):
 * Read and validate the configuration file ${path}.  Returns a new config the
 * caller owns (free with cfg_free), or NULL with a "file:line: setting:
 * problem" message in ${err}.
 */
struct cfg *cfg_load(const char *path, char *err, size_t errlen);

/**
 * cfg_load_string(text, path, err, errlen):
 * As cfg_load, but parse ${text} as if it were the contents of file ${path}:
 * messages name ${path}, and relative paths and @include names resolve
 * against its folder, which must exist (the file itself need not).  For
 * tests and fuzzing; like cfg_load it only checks that TLS files are
 * readable, and @include reads what it names.
 */
struct cfg *cfg_load_string(const char *text, const char *path, char *err,
    size_t errlen);

/**
 * cfg_free(c):
 * Free a configuration from cfg_load.  NULL is a no-op.
 */
void cfg_free(struct cfg *c);

/**
 * cfg_mode_name(mode):
 * The configuration word for ${mode} ("echo").
 */
const char *cfg_mode_name(enum cfg_mode mode);

#endif

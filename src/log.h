/*
 * log: one place that writes log records, to journald or to stderr.
 *
 * A record is a priority, a stable MESSAGE_ID (one per event kind, so
 * "journalctl MESSAGE_ID=..." finds them), a human message and structured
 * fields with upper-case names.  To journald they go as native fields; on a
 * terminal they are printed as "tls-echod[pid]: level: message KEY=value...";
 * with log = "json", as one JSON object per line.
 * Never pass key material or payload bytes.
 */
#ifndef TLS_ECHOD_LOG_H
#define TLS_ECHOD_LOG_H

#include <stddef.h>
#include <syslog.h>

/* Event kinds (sd-id128 strings; stable: operators filter on them). */
#define LOG_ID_START      "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c01"
#define LOG_ID_READY      "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c02"
#define LOG_ID_STOP       "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c03"
#define LOG_ID_CONFIG     "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c04"
#define LOG_ID_WORKER     "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c05"
#define LOG_ID_CONN_CLOSE "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c06"
#define LOG_ID_REFUSED    "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c07"
#define LOG_ID_LIMIT      "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c08"
#define LOG_ID_ERROR      "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c09"
#define LOG_ID_RELOAD     "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0a"
#define LOG_ID_STATUS     "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0b"
#define LOG_ID_CRL        "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0c"
#define LOG_ID_EXPIRY     "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0d"
/* Refusals counted, not logged one by one (SUPPRESSED=count). */
#define LOG_ID_REFUSED_SUPPRESSED "5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0e"

enum log_target { LOG_TARGET_STDERR, LOG_TARGET_JOURNAL, LOG_TARGET_JSON };

struct log_field {
	const char *key;   /* upper-case journald field name */
	const char *value; /* NULL: field skipped */
};

/**
 * log_open(target, force):
 * Use ${target} when ${force} is set, else the journal when stderr is
 * connected to it (JOURNAL_STREAM), else stderr.  LOG_TARGET_JSON writes one
 * JSON object per line on stderr, with journald's fields and a TIMESTAMP.
 */
void log_open(enum log_target target, int force);

/**
 * log_target():
 * Where records go now.
 */
enum log_target log_target(void);

/**
 * log_target_name():
 * "journal", "stderr" or "stderr (JSON lines)", for the startup line.
 */
const char *log_target_name(void);

/**
 * log_event(prio, msgid, fields, nfields, fmt, ...):
 * Write one record with MESSAGE=${fmt...} and the ${nfields} ${fields}.
 */
void log_event(int prio, const char *msgid, const struct log_field *fields,
    size_t nfields, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/**
 * log_msg(prio, fmt, ...):
 * Write one record with no structured fields and no MESSAGE_ID.
 */
void log_msg(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

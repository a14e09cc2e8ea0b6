/*
 * fuzz_queue.c - queue_parse() and queue_parse_state() on arbitrary bytes.
 * Both must never crash or read outside the buffer, and whatever they
 * accept must satisfy the invariants the rest of ferry relies on (body
 * inside the file, recipients within limits, strings terminated, states
 * in range); a violation aborts so libFuzzer reports it.  A state
 * accepted stays accepted, the same, with the start of a torn append
 * after it (a crash in the write of the next one).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

#define FUZZ_NRCPT	4	/* recipients of the message the state is for */
#define FUZZ_TORN	"R 1 sent 25\0\0\0\0R 2 sent\n"	/* cut, then zeros */

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void rcpt_free(struct queue_rcpt *);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_rcpt rcpt[FUZZ_NRCPT], seen[FUZZ_NRCPT];
	struct queue_info info;
	const char *why = NULL;
	unsigned i;
	char *torn;

	if (queue_parse((const char *)data, size, &info, &why) == 0) {
		if (info.nrcpt < 1 || info.nrcpt > QUEUE_MAX_RCPT ||
		    info.rcpt == NULL || info.body_off > QUEUE_HDR_MAX ||
		    info.body_off + info.size > size ||
		    !queue_id_valid(info.id) ||
		    memchr(info.sender, '\0', sizeof(info.sender)) == NULL)
			abort();
		for (i = 0; i < info.nrcpt; i++)
			if (info.rcpt[i].address == NULL ||
			    info.rcpt[i].address[0] == '\0' ||
			    strlen(info.rcpt[i].address) >= QUEUE_ADDR_MAX ||
			    info.rcpt[i].reason != NULL)
				abort();
		queue_info_free(&info);
	} else if (why == NULL || info.rcpt != NULL)
		abort();

	memset(&info, 0, sizeof(info));
	memset(rcpt, 0, sizeof(rcpt));
	memcpy(info.id, "0123456789ABCDEF01", QUEUE_ID_SIZE);
	info.nrcpt = FUZZ_NRCPT;
	info.rcpt = rcpt;
	why = NULL;
	if (queue_parse_state((const char *)data, size, &info, &why) == 0) {
		for (i = 0; i < FUZZ_NRCPT; i++)
			if ((unsigned)rcpt[i].status > RS_BOUNCED ||
			    (rcpt[i].reason != NULL &&
			    (rcpt[i].reason[0] == '\0' ||
			    strlen(rcpt[i].reason) >= QUEUE_REASON_MAX)))
				abort();
		/* Only after a whole line: a partial one that the torn
		 * bytes complete is another record, not the same file. */
		if (data[size - 1] != '\n' ||
		    (torn = malloc(size + sizeof(FUZZ_TORN))) == NULL) {
			rcpt_free(rcpt);
			return 0;
		}
		memcpy(seen, rcpt, sizeof(seen));
		memset(rcpt, 0, sizeof(rcpt));
		memcpy(torn, data, size);
		memcpy(torn + size, FUZZ_TORN, sizeof(FUZZ_TORN) - 1);
		if (queue_parse_state(torn, size + sizeof(FUZZ_TORN) - 1,
		    &info, &why) != 0)
			abort();
		for (i = 0; i < FUZZ_NRCPT; i++)
			if (seen[i].status != rcpt[i].status ||
			    seen[i].notified != rcpt[i].notified ||
			    (seen[i].reason == NULL) !=
			    (rcpt[i].reason == NULL) ||
			    (seen[i].reason != NULL &&
			    strcmp(seen[i].reason, rcpt[i].reason) != 0))
				abort();
		rcpt_free(seen);
		rcpt_free(rcpt);
		free(torn);
	} else if (why == NULL)
		abort();
	return 0;
}

/* The reasons queue_parse_state() allocated. */
static void
rcpt_free(struct queue_rcpt *r)
{
	unsigned i;

	for (i = 0; i < FUZZ_NRCPT; i++)
		free(r[i].reason);
}

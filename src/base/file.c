/* coffre — small, careful file helpers: bounded reads, atomic durable writes, and the
 * owner/permission check for folders that hold keys and data. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

cf_err cf_file_read(const char *path, size_t max, struct cf_buf *out)
{
	cf_err err = CF_OK;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cf_err_fail(errno == ENOENT ? CF_E_NOT_FOUND : CF_E_IO,
		                   "%s: cannot open: %s", path, strerror(errno));
	cf_buf_init(out, max);
	uint8_t chunk[8192];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = cf_err_fail(CF_E_IO, "%s: cannot read: %s", path, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		if ((err = cf_buf_append(out, chunk, (size_t)r)) != CF_OK) {
			if (err == CF_E_TOO_LARGE)
				(void)cf_err_fail(err, "%s: larger than %zu bytes", path, max);
			break;
		}
	}
	cf_wipe(chunk, sizeof chunk);
	close(fd);
	if (err)
		cf_buf_free(out);
	return err;
}

cf_err cf_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	cf_err err = CF_OK;
	char tmp[CF_PATH_MAX + 16];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return cf_err_fail(CF_E_INVALID, "path too long");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
	if (fd < 0)
		return cf_err_fail(CF_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
	if (fchmod(fd, (mode_t)mode) != 0) {
		err = cf_err_fail(CF_E_IO, "%s: cannot set mode: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	const uint8_t *p = data;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = cf_err_fail(CF_E_IO, "%s: cannot write: %s", tmp, strerror(errno));
			goto out_unlink;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		err = cf_err_fail(CF_E_IO, "%s: cannot sync: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		err = cf_err_fail(CF_E_IO, "%s: cannot rename into place: %s", path,
		                  strerror(errno));
		goto out_unlink;
	}
	/* Make the rename itself durable. */
	char dir[CF_PATH_MAX];
	(void)snprintf(dir, sizeof dir, "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return CF_OK;
out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return err;
}

cf_err cf_dir_private(const char *path, bool create)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno != ENOENT || !create)
			return cf_err_fail(CF_E_IO, "%s: %s", path, strerror(errno));
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return cf_err_fail(CF_E_IO, "%s: cannot create: %s", path, strerror(errno));
		if (stat(path, &st) != 0)
			return cf_err_fail(CF_E_IO, "%s: %s", path, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return cf_err_fail(CF_E_PERMISSION, "%s is not a folder", path);
	if (st.st_uid != geteuid())
		return cf_err_fail(
		        CF_E_PERMISSION,
		        "%s belongs to uid %u, not to this process (uid %u); chown it or "
		        "choose another folder",
		        path, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 077)
		return cf_err_fail(
		        CF_E_PERMISSION,
		        "%s has mode %03o; it holds keys and must be 0700 (chmod 700 %s)", path,
		        (unsigned)(st.st_mode & 0777), path);
	return CF_OK;
}

bool cf_send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(fd, b + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += (size_t)w;
	}
	return true;
}

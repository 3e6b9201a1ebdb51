/*
 * nginx stand-in for the web server fixtures. It behaves as critest observes
 * nginx, with busybox httpd doing the serving:
 *  - the master's command line reads "nginx: master process ..." (ContainerPID
 *    and PodPID specs look for "master process" in /proc/1/cmdline);
 *  - its name is "nginx" and it writes its pid to /var/run/nginx.pid (the
 *    HostPID spec compares that file with `pidof nginx` seen from another
 *    container);
 *  - it serves /usr/share/nginx/html on the port written in /etc/nginx/port
 *    (80 when the file is missing);
 *  - SIGTERM, SIGINT and SIGQUIT stop it, as they stop nginx.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SELF "/usr/sbin/nginx"
#define TITLE "nginx: master process nginx -g daemon off;"
#define PID_FILE "/var/run/nginx.pid"
#define HTML_ROOT "/usr/share/nginx/html"

static volatile pid_t worker;

static void on_stop(int sig)
{
	(void)sig;
	if (worker > 0)
		kill(worker, SIGTERM);
}

static void read_port(char *port, size_t len)
{
	FILE *f = fopen("/etc/nginx/port", "r");

	snprintf(port, len, "80");
	if (f) {
		if (fgets(port, (int)len, f))
			port[strcspn(port, " \r\n")] = '\0';
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	char port[16];
	struct sigaction sa;
	FILE *f;
	int status = 0;

	(void)argc;
	/* Re-exec so that the process title is nginx's master title. */
	if (strcmp(argv[0], TITLE) != 0) {
		char *args[] = { TITLE, NULL };

		execv(SELF, args);
		perror("nginx: exec " SELF);
		return 1;
	}

	read_port(port, sizeof(port));
	mkdir("/var/run", 0755);
	f = fopen(PID_FILE, "w");
	if (!f) {
		perror("nginx: " PID_FILE);
		return 1;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);

	printf("nginx: master process %d serving " HTML_ROOT " on port %s\n", (int)getpid(), port);
	fflush(stdout);
	worker = fork();
	if (worker < 0) {
		perror("nginx: fork");
		return 1;
	}
	if (worker == 0) {
		execl("/bin/busybox", "httpd", "-f", "-v", "-p", port, "-h", HTML_ROOT, (char *)NULL);
		perror("nginx: exec busybox httpd");
		_exit(127);
	}

	/* Reap everything (this may be PID 1) until the worker is gone. */
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, 0);

		if (pid == worker) {
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
			break;
		}
		if (pid < 0 && errno != EINTR)
			break;
	}
	unlink(PID_FILE);
	return status;
}

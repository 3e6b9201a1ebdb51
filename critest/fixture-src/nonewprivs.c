/*
 * nnp: installed setuid root in the nonewprivs fixture, like the e2e
 * nonewprivs image. Started as a non-root user it reports 0 when the setuid
 * bit took effect and the user's uid when no_new_privs prevented it.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}

#ifndef PYSTRIB_BANNED_H
#define PYSTRIB_BANNED_H

/*
 * Calls that invite buffer overflows or hidden global state. Use struct buf
 * (buf_addf, buf_add) or snprintf with a checked result instead. As in git,
 * the macro expands to an undeclared identifier, so a use fails to compile.
 */
#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) BANNED(strncat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)

#endif

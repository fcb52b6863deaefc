/* User-space stand-ins for the kernel types toa_opt.c uses. */
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <netinet/in.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint16_t __be16;
typedef uint32_t __be32;

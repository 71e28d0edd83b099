/* qr_lanes.h - private: the vector twins of qr_erff, qr_tanhf (qr_math.h) and the four GELU
 * functions (qr_vec.h), written once over a lane width. qr_vec.h includes it once per width
 * it builds (8 lanes under AVX2, 16 under AVX-512) with the QR_L_* macros naming that width's
 * type and operations; no include guard. Each twin does its scalar function's float32
 * operations in the same order (a select where the scalar code branches), so every lane is
 * bit-identical to it, at either width. */

/* the constants are floats, so the width's set1 takes them as they are */
#define QR_L_HORNER(y, v, c) QR_L_ADD(QR_L_MUL(y, v), QR_L_SET(c))   /* y * v + c */

/* qr_erff. The exp argument p(tc) lies in [-18, 0] (tc is clamped to [0, 3.92], a NaN x
 * gives tc = 3.92), where qr_expf's clamps do nothing: QR_L_EXP_IN_RANGE may skip them. */
QR_L_FN QR_L_V QR_L(qr_erf)(QR_L_V x) {
    const QR_L_V s = QR_L_MUL(x, x), t = QR_L_ABS(x);
    QR_L_V q = QR_L_SET(QR_ERF_Q5);
    q = QR_L_HORNER(q, s, QR_ERF_Q4);
    q = QR_L_HORNER(q, s, QR_ERF_Q3);
    q = QR_L_HORNER(q, s, QR_ERF_Q2);
    q = QR_L_HORNER(q, s, QR_ERF_Q1);
    q = QR_L_HORNER(q, s, QR_ERF_Q0);
    const QR_L_V small = QR_L_ADD(QR_L_MUL(q, x), x);
    const QR_L_V tc = QR_L_MIN(t, QR_L_SET(QR_ERF_TMAX));   /* t < TMAX ? t : TMAX */
    QR_L_V p = QR_L_SET(QR_ERF_P6);
    p = QR_L_HORNER(p, tc, QR_ERF_P5);
    p = QR_L_HORNER(p, tc, QR_ERF_P4);
    p = QR_L_HORNER(p, tc, QR_ERF_P3);
    p = QR_L_HORNER(p, tc, QR_ERF_P2);
    p = QR_L_HORNER(p, tc, QR_ERF_P1);
    p = QR_L_HORNER(p, tc, QR_ERF_P0);
    QR_L_V big = QR_L_SUB(QR_L_SET(1.0f), QR_L_EXP_IN_RANGE(p));
    big = QR_L_NEG_IF(QR_L_LT(x, QR_L_SET(0.0f)), big);
    return QR_L_SEL(QR_L_GE(t, QR_L_SET(QR_ERF_T)), small, big);
}

/* qr_tanhf */
QR_L_FN QR_L_V QR_L(qr_tanh)(QR_L_V x) {
    const QR_L_M neg = QR_L_LT(x, QR_L_SET(0.0f));
    const QR_L_V ax = QR_L_NEG_IF(neg, x), s = QR_L_MUL(x, x);
    QR_L_V p = QR_L_SET(QR_TANH_P4);
    p = QR_L_HORNER(p, s, QR_TANH_P3);
    p = QR_L_HORNER(p, s, QR_TANH_P2);
    p = QR_L_HORNER(p, s, QR_TANH_P1);
    p = QR_L_HORNER(p, s, QR_TANH_P0);
    const QR_L_V small = QR_L_ADD(QR_L_MUL(QR_L_MUL(p, s), x), x);
    const QR_L_V e = QR_L_ADD(QR_L_EXP(QR_L_ADD(ax, ax)), QR_L_SET(1.0f));
    QR_L_V big = QR_L_SUB(QR_L_SET(1.0f), QR_L_DIV(QR_L_SET(2.0f), e));
    big = QR_L_NEG_IF(neg, big);
    return QR_L_SEL(QR_L_LT(ax, QR_L_SET(0.625f)), big, small);
}

/* qr_gelu_f */
QR_L_FN QR_L_V QR_L(qr_gelu)(QR_L_V x) {
    QR_L_V t = QR_L(qr_erf)(QR_L_MUL(x, QR_L_SET(QR_INV_SQRT2)));
    t = QR_L_MUL(QR_L_ADD(t, QR_L_SET(1.0f)), QR_L_SET(0.5f));
    return QR_L_MUL(x, t);
}

/* qr_gelu_grad_f */
QR_L_FN QR_L_V QR_L(qr_gelu_grad)(QR_L_V x) {
    QR_L_V cdf = QR_L(qr_erf)(QR_L_MUL(x, QR_L_SET(QR_INV_SQRT2)));
    cdf = QR_L_MUL(QR_L_ADD(cdf, QR_L_SET(1.0f)), QR_L_SET(0.5f));
    const QR_L_V pdf = QR_L_MUL(QR_L_EXP(QR_L_MUL(QR_L_MUL(x, x), QR_L_SET(-0.5f))),
                                QR_L_SET(QR_INV_SQRT_2PI));
    return QR_L_ADD(cdf, QR_L_MUL(pdf, x));
}

/* qr_gelu_tanh_f */
QR_L_FN QR_L_V QR_L(qr_gelu_tanh)(QR_L_V x) {
    QR_L_V t = QR_L_MUL(x, x);
    t = QR_L_ADD(QR_L_MUL(t, QR_L_SET(0.044715f)), QR_L_SET(1.0f));
    const QR_L_V e = QR_L_EXP(QR_L_MUL(QR_L_MUL(t, x), QR_L_SET(QR_NEG_2_SQRT_2_OVER_PI)));
    const QR_L_V s = QR_L_DIV(QR_L_SET(1.0f), QR_L_ADD(e, QR_L_SET(1.0f)));
    return QR_L_MUL(x, s);
}

/* qr_gelu_tanh_grad_f */
QR_L_FN QR_L_V QR_L(qr_gelu_tanh_grad)(QR_L_V x) {
    const QR_L_V one = QR_L_SET(1.0f);
    const QR_L_V q = QR_L_MUL(QR_L_MUL(x, x), QR_L_SET(0.044715f));
    const QR_L_V e = QR_L_EXP(QR_L_MUL(QR_L_MUL(QR_L_ADD(q, one), x),
                                       QR_L_SET(QR_NEG_2_SQRT_2_OVER_PI)));
    const QR_L_V s = QR_L_DIV(one, QR_L_ADD(e, one));
    const QR_L_V du = QR_L_MUL(QR_L_ADD(QR_L_MUL(q, QR_L_SET(3.0f)), one),
                               QR_L_SET(QR_2_SQRT_2_OVER_PI));
    return QR_L_ADD(s, QR_L_MUL(QR_L_MUL(QR_L_MUL(s, QR_L_SUB(one, s)), du), x));
}

#undef QR_L_HORNER
#undef QR_L
#undef QR_L_FN
#undef QR_L_V
#undef QR_L_M
#undef QR_L_SET
#undef QR_L_MUL
#undef QR_L_ADD
#undef QR_L_SUB
#undef QR_L_DIV
#undef QR_L_MIN
#undef QR_L_ABS
#undef QR_L_LT
#undef QR_L_GE
#undef QR_L_SEL
#undef QR_L_NEG_IF
#undef QR_L_EXP
#undef QR_L_EXP_IN_RANGE
